"""Tables from files: CSV, Parquet and JSON Lines, read by pandas (pyarrow for Parquet) into tensors on the device.

One column is the target, the others (or those named) the features. Numeric features are standardized with
the training split's mean and standard deviation; categorical ones (text columns, or those named) become one-hot
columns or embedding indices. Statistics, categories and class names all come from the training split alone.
Missing values follow `missing`: fill (numeric: the training mean; categorical: a category of its own), drop the
row, or error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from tui_trainer.catalog.data_files import (
    DataFileError,
    PathOptions,
    first_line,
    needs,
    regular_file,
    split_order,
)
from tui_trainer.text import printable

if TYPE_CHECKING:
    import pandas

    from tui_trainer.catalog.datasets import DataBundle

MISSING_CATEGORY = "<missing>"
MAX_ONE_HOT = 1024
"""Categories a column may have for one-hot columns (an id column would make one a row)."""
FORMATS = {"csv": "CSV", "parquet": "Parquet", "jsonl": "JSON Lines"}


class TableOptions(PathOptions):
    target: str = Field(min_length=1, max_length=1000, description="The column to predict.")
    features: list[str] | None = Field(None, min_length=1, description="Feature columns; unset: all but target.")
    categorical: list[str] | None = Field(
        None, description="Columns to encode as categories; unset: the feature columns that are not numbers.")
    encoding: Literal["onehot", "index"] = Field(
        "onehot", description="onehot: one 0/1 column per category; index: batches are dicts of numeric and "
                              "categorical (embedding index) tensors, for a model of your own.")
    missing: Literal["fill", "drop", "error"] = Field(
        "fill", description="Missing feature values: fill (numbers: the training mean; categories: a category of "
                            "their own), drop the row, or error. A missing target drops the row unless error.")
    standardize: bool = Field(True, description="Scale numeric features by the training split's mean and std.")
    separator: str = Field(",", min_length=1, max_length=4, description="csv: the field separator.")

    @model_validator(mode="after")
    def _target_not_a_feature(self) -> TableOptions:
        if self.features and self.target in self.features:
            raise ValueError(f"the target {self.target!r} cannot be a feature too")
        if self.categorical and self.features and not set(self.categorical) <= set(self.features):
            raise ValueError(f"categorical {sorted(set(self.categorical) - set(self.features))} not among features")
        return self


def _read(kind: str, option: str, path: str, options: TableOptions) -> pandas.DataFrame:
    name = FORMATS[kind]
    file = regular_file(f"data.options.{option}", path)
    pandas = needs("pandas", f"a {name} file")
    if kind == "parquet":
        needs("pyarrow", "a Parquet file")
    try:
        if kind == "csv":
            frame = pandas.read_csv(file, sep=options.separator)
        elif kind == "parquet":
            frame = pandas.read_parquet(file)
        else:
            frame = pandas.read_json(file, lines=True)
    except Exception as error:  # pandas and pyarrow raise many kinds for a file they cannot parse
        raise DataFileError(f"data.options.{option}",
                            f"{printable(path)}: cannot read as {name}: {first_line(error)}") from None
    if frame.empty:
        raise DataFileError(f"data.options.{option}", f"{printable(path)}: has no rows")
    frame.columns = [str(column) for column in frame.columns]
    return frame


def _check_columns(frame: pandas.DataFrame, options: TableOptions, option: str, path: str) -> list[str]:
    columns = list(frame.columns)
    shown = ", ".join(printable(column) for column in columns[:20]) + (" ..." if len(columns) > 20 else "")
    if options.target not in columns:
        raise DataFileError("data.options.target", f"{printable(options.target)!r} is not a column of "
                                                   f"{printable(path)}; its columns: {shown}")
    features = options.features or [column for column in columns if column != options.target]
    absent = [column for column in features if column not in columns]
    if absent:
        raise DataFileError("data.options.features", f"{printable(absent[0])!r} is not a column of "
                                                     f"{printable(path)}; its columns: {shown}")
    if not features:
        raise DataFileError("data.options.features", f"{printable(path)} has no column but the target")
    return features


def _drop_missing(frame: pandas.DataFrame, columns: list[str], options: TableOptions, path: str) -> pandas.DataFrame:
    """frame without the rows that `missing` drops (or one line, for missing: error)."""
    used = [*columns, options.target]
    if options.missing == "error":
        counts = frame[used].isna().sum()
        if counts.any():
            column = counts[counts > 0].index[0]
            raise DataFileError("data.options.missing", f"{printable(path)}: column {printable(column)!r} has "
                                                        f"{int(counts[column])} missing values (missing: error; "
                                                        "allowed also: fill, drop)")
        return frame
    keep = frame[used if options.missing == "drop" else [options.target]].notna().all(axis=1)
    if bool(keep.all()):
        return frame
    frame = frame[keep]
    if frame.empty:
        raise DataFileError("data.options.missing", f"{printable(path)}: no row is left without missing values")
    return frame


def _numeric(frame: pandas.DataFrame, column: str, path: str):
    pandas = needs("pandas", "a table")
    values = pandas.to_numeric(frame[column], errors="coerce")
    bad = values.isna() & ~frame[column].isna()
    if bad.any():
        raise DataFileError("data.options.categorical", f"{printable(path)}: column {printable(column)!r} holds "
                                                        f"{printable(frame[column][bad].iloc[0])!r}, not a number; "
                                                        "name it in categorical")
    return values.astype("float64")


def _numeric_block(split: pandas.DataFrame, numeric: list[str], path: str):
    """The numeric feature columns as one float32 array [N, F] (missing values NaN)."""
    import numpy

    pandas = needs("pandas", "a table")
    block = split[numeric]
    text = [column for column in numeric if not pandas.api.types.is_numeric_dtype(block[column].dtype)]
    if text:
        block = block.assign(**{column: _numeric(split, column, path) for column in text})
    return numpy.ascontiguousarray(block.to_numpy(dtype="float32", na_value=numpy.nan)).reshape(len(split), -1)


def _labels(train: pandas.Series, val: pandas.Series, task: str, path: str):
    """(train targets, val targets, class names) as tensors: class indices, or float32 [N, 1]."""
    import torch

    if task == "regression":
        pandas = needs("pandas", "a table")
        tensors = []
        for series in (train, val):
            values = pandas.to_numeric(series, errors="coerce")
            if values.isna().any():
                raise DataFileError("data.options.target", f"{printable(path)}: the regression target holds "
                                                           f"{printable(series[values.isna()].iloc[0])!r}, "
                                                           "not a number")
            tensors.append(torch.tensor(values.to_numpy(dtype="float32")).reshape(-1, 1))
        return tensors[0], tensors[1], None
    classes = sorted(train.unique().tolist(), key=lambda value: (str(type(value)), value))
    index = {value: position for position, value in enumerate(classes)}
    unseen = [value for value in val.unique().tolist() if value not in index]
    if unseen:
        raise DataFileError("data.options.val", f"class {printable(unseen[0])!r} of the validation data is not in "
                                                f"the training data ({len(classes)} classes)")
    train_y = torch.tensor(train.map(index).to_numpy(dtype="int64"))
    val_y = torch.tensor(val.map(index).to_numpy(dtype="int64"))
    return train_y, val_y, tuple(printable(value) for value in classes)


def build_table(kind: str, options: TableOptions, val_split: float | None, seed: int, task: str) -> DataBundle:
    import torch

    from tui_trainer.catalog.datasets import DataBundle

    frames = [(option, path, _read(kind, option, path, options)) for option, path in options.named()]
    features = _check_columns(frames[0][2], options, frames[0][0], frames[0][1])
    for option, path, frame in frames[1:]:
        _check_columns(frame, options.model_copy(update={"features": features}), option, path)
    frames = [(option, path, _drop_missing(frame, features, options, path)) for option, path, frame in frames]
    if len(frames) == 1:
        (_, path, frame), = frames
        if len(frame) < 2:
            raise DataFileError("data.options.path", f"{printable(path)}: needs at least 2 rows to split")
        categorical, numeric = _kinds(features, options, [frame])
        train_index, val_index = split_order(len(frame), val_split or 0.2, seed)
        # The numbers are split once they are one tensor; only the category and target columns as frames.
        whole = torch.from_numpy(_numeric_block(frame, numeric, path))
        train_x, val_x = whole[train_index], whole[val_index]
        labelled = frame[[*categorical, options.target]]
        train, val = labelled.iloc[train_index.numpy()], labelled.iloc[val_index.numpy()]
    else:
        train, val, path = frames[0][2], frames[1][2], frames[0][1]
        categorical, numeric = _kinds(features, options, [train, val])
        train_x, val_x = (torch.from_numpy(_numeric_block(split, numeric, path)) for split in (train, val))
    if train_x.isnan().any() or val_x.isnan().any():
        fill = torch.nanmean(train_x.double(), 0, keepdim=True).nan_to_num(0.0).float()
        train_x = torch.where(train_x.isnan(), fill, train_x)
        val_x = torch.where(val_x.isnan(), fill, val_x)
    if options.standardize and numeric:
        std, mean = torch.std_mean(train_x.double(), 0, keepdim=True, correction=0)
        std = torch.where(std > 1e-12, std, torch.ones_like(std))
        mean, std = mean.float(), std.float()
        train_x, val_x = (train_x - mean) / std, (val_x - mean) / std

    codes_train, codes_val, cardinalities = [], [], []
    for column in categorical:
        as_text_train = train[column].astype("string").fillna(MISSING_CATEGORY)
        as_text_val = val[column].astype("string").fillna(MISSING_CATEGORY)
        categories = sorted(as_text_train.unique().tolist())
        if options.encoding == "onehot" and len(categories) > MAX_ONE_HOT:
            raise DataFileError("data.options.encoding", f"column {printable(column)!r} has {len(categories)} "
                                                         f"categories; one-hot takes at most {MAX_ONE_HOT}: use "
                                                         "encoding: index, or leave it out of features")
        lookup = {value: position + 1 for position, value in enumerate(categories)}  # 0: not seen in training
        codes_train.append(torch.tensor(as_text_train.map(lookup).to_numpy(dtype="int64")))
        codes_val.append(torch.tensor(as_text_val.map(lookup).fillna(0).to_numpy(dtype="int64")))
        cardinalities.append(len(categories) + 1)

    train_y, val_y, class_names = _labels(train[options.target], val[options.target], task, path)
    if options.encoding == "index" and categorical:
        train_inputs: Any = {"numeric": train_x, "categorical": torch.stack(codes_train, 1)}
        val_inputs: Any = {"numeric": val_x, "categorical": torch.stack(codes_val, 1)}
    else:
        def one_hot(codes: list[torch.Tensor]) -> list[torch.Tensor]:
            # category 0 (not seen in training) is the all-zero row
            return [torch.nn.functional.one_hot(c, k)[:, 1:].float() for c, k in zip(codes, cardinalities,
                                                                                      strict=True)]
        train_inputs = torch.cat([train_x, *one_hot(codes_train)], 1).contiguous()
        val_inputs = torch.cat([val_x, *one_hot(codes_val)], 1).contiguous()
    num_classes = len(class_names) if class_names is not None else None
    return DataBundle(
        train=(train_inputs, train_y.contiguous()), val=(val_inputs, val_y.contiguous()),
        input_shape=(train_x.shape[1],) if isinstance(train_inputs, dict) else tuple(train_inputs.shape[1:]),
        num_outputs=num_classes or 1, num_classes=num_classes, in_memory=True, class_names=class_names,
        categories=dict(zip(categorical, cardinalities, strict=True)) if options.encoding == "index" else None,
    )


def _kinds(features: list[str], options: TableOptions, frames: list[pandas.DataFrame]) -> tuple[list[str], list[str]]:
    """(categorical, numeric) feature columns: those named categorical, else those that are not numbers."""
    categorical = options.categorical if options.categorical is not None else [
        column for column in features if not all(_is_number(frame[column]) for frame in frames)]
    return categorical, [column for column in features if column not in categorical]


def _is_number(series: pandas.Series) -> bool:
    pandas = needs("pandas", "a table")
    return bool(pandas.api.types.is_numeric_dtype(series.dtype)) or bool(series.isna().all())
