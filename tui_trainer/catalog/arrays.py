"""Arrays from files: `.npz`, `.npy` and `.pt` files of tensors, held in memory (batched on the device).

One file (`path`, a .npz or a .pt of a dict) holds x and y, or x_train, y_train, x_val and y_val; or each
array has a file of its own (`x`, `y`, and optionally `x_val`, `y_val`: .npy or .pt of one tensor). NumPy reads
with allow_pickle=False and torch with weights_only=True: a file cannot run code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from tui_trainer.catalog.data_files import DataFileError, first_line, regular_file, split_order
from tui_trainer.catalog.options import Options
from tui_trainer.text import printable

if TYPE_CHECKING:
    import torch

    from tui_trainer.catalog.datasets import DataBundle

SUFFIXES = (".npz", ".npy", ".pt", ".pth")


class ArrayOptions(Options):
    path: str | None = Field(None, min_length=1, max_length=4096,
                             description="A .npz (or a .pt of a dict) holding x and y, or x_train, y_train, x_val "
                                         "and y_val.")
    x: str | None = Field(None, min_length=1, max_length=4096, description="A .npy or .pt file of the inputs.")
    y: str | None = Field(None, min_length=1, max_length=4096, description="A .npy or .pt file of the targets.")
    x_val: str | None = Field(None, min_length=1, max_length=4096, description="Validation inputs (with y_val).")
    y_val: str | None = Field(None, min_length=1, max_length=4096, description="Validation targets (with x_val).")
    standardize: bool = Field(False, description="Scale each input feature by the training split's mean and std.")

    @model_validator(mode="after")
    def _one_way(self) -> ArrayOptions:
        separate = [self.x, self.y, self.x_val, self.y_val]
        if self.path is None and (self.x is None or self.y is None):
            raise ValueError("give path (a .npz or .pt holding x and y), or x and y files")
        if self.path is not None and any(separate):
            raise ValueError("give either path or x and y files, not both")
        if (self.x_val is None) != (self.y_val is None):
            raise ValueError("give x_val and y_val together")
        return self


def _load(option: str, path: str) -> Any:
    import numpy
    import torch

    file = regular_file(f"data.options.{option}", path, SUFFIXES)
    try:
        if file.suffix.lower() in (".pt", ".pth"):
            return torch.load(file, map_location="cpu", weights_only=True)
        loaded = numpy.load(file, allow_pickle=False)
        if isinstance(loaded, numpy.lib.npyio.NpzFile):
            with loaded:
                return {name: loaded[name] for name in loaded.files}
        return loaded
    except Exception as error:  # a truncated file, pickled objects refused, not an array file at all
        raise DataFileError(f"data.options.{option}", f"{printable(path)}: cannot read: {first_line(error)}") from None


def _tensor(option: str, path: str, name: str, value: Any) -> torch.Tensor:
    import numpy
    import torch

    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, numpy.ndarray) and value.dtype.kind in "biuf":
        return torch.from_numpy(numpy.ascontiguousarray(value))
    if isinstance(value, numpy.ndarray) and value.dtype.kind in "US" and name.startswith("y"):
        return value  # class names, encoded with the training labels
    kind = value.dtype if isinstance(value, numpy.ndarray) else type(value).__name__
    raise DataFileError(f"data.options.{option}", f"{printable(path)}: {name} is {kind}, not an array of numbers")


def _arrays(options: ArrayOptions) -> dict[str, Any]:
    if options.path is None:
        named = {"x_train": ("x", options.x), "y_train": ("y", options.y)}
        if options.x_val:
            named |= {"x_val": ("x_val", options.x_val), "y_val": ("y_val", options.y_val)}
        found = {}
        for name, (option, path) in named.items():
            value = _load(option, path)
            if isinstance(value, dict):
                raise DataFileError(f"data.options.{option}", f"{printable(path)}: holds several arrays; "
                                                              "give it as path")
            found[name] = _tensor(option, path, name, value)
        return found
    stored = _load("path", options.path)
    if not isinstance(stored, dict):
        raise DataFileError("data.options.path", f"{printable(options.path)}: holds one array; a file of its own "
                                                 "goes in x or y")
    for names in (("x_train", "y_train", "x_val", "y_val"), ("x", "y")):
        if all(name in stored for name in names):
            pairs = dict(zip(("x_train", "y_train", "x_val", "y_val")[:len(names)], names, strict=True))
            return {key: _tensor("path", options.path, name, stored[name]) for key, name in pairs.items()}
    held = ", ".join(printable(name) for name in list(stored)[:10]) or "nothing"
    raise DataFileError("data.options.path", f"{printable(options.path)}: needs arrays x and y (or x_train, "
                                             f"y_train, x_val, y_val); it holds {held}")


def _labels(train_y: Any, val_y: Any, task: str):
    """Class indices [N] (and class names, for text labels) or float32 targets [N, k]."""
    import numpy
    import torch

    if task == "regression":
        out = []
        for y in (train_y, val_y):
            if not isinstance(y, torch.Tensor):
                raise DataFileError("data.options", "regression targets must be numbers")
            y = y.float()
            out.append(y.reshape(-1, 1) if y.dim() == 1 else y.reshape(len(y), -1))
        return out[0], out[1], None
    if not isinstance(train_y, torch.Tensor):  # text labels: the training split's sorted names
        names, train_codes = numpy.unique(train_y, return_inverse=True)
        lookup = {name: index for index, name in enumerate(names.tolist())}
        unseen = [name for name in numpy.unique(val_y).tolist() if name not in lookup]
        if unseen:
            raise DataFileError("data.options", f"class {printable(unseen[0])!r} of the validation data is not "
                                                "in the training data")
        val_codes = [lookup[name] for name in val_y.tolist()]
        return (torch.as_tensor(train_codes, dtype=torch.int64).reshape(-1), torch.tensor(val_codes),
                tuple(printable(name) for name in names.tolist()))
    for y in (train_y, val_y):
        if y.dim() != 1 or (y.is_floating_point() and not bool((y == y.round()).all())) or bool((y < 0).any()):
            raise DataFileError("data.options", "classification targets must be class indices (whole numbers "
                                                f"from 0, one per sample); given {tuple(y.shape)} {y.dtype}")
    return train_y.long(), val_y.long(), None


def build_arrays(options: ArrayOptions, val_split: float | None, seed: int, task: str) -> DataBundle:

    from tui_trainer.catalog.datasets import DataBundle

    arrays = _arrays(options)
    for x, y in (("x_train", "y_train"), ("x_val", "y_val")):
        if x in arrays and len(arrays[x]) != len(arrays[y]):
            raise DataFileError("data.options", f"{x} has {len(arrays[x])} samples but {y} has {len(arrays[y])}")
    if "x_val" in arrays:
        train_x, train_y, val_x, val_y = (arrays[name] for name in ("x_train", "y_train", "x_val", "y_val"))
    else:
        x, y = arrays["x_train"], arrays["y_train"]
        if len(x) < 2:
            raise DataFileError("data.options", f"needs at least 2 samples to split; given {len(x)}")
        train_index, val_index = split_order(len(x), val_split or 0.2, seed)
        train_x, val_x = x[train_index], x[val_index]
        train_y, val_y = y[train_index.numpy()], y[val_index.numpy()]
    train_y, val_y, class_names = _labels(train_y, val_y, task)
    train_x, val_x = train_x.float(), val_x.float()
    if options.standardize:
        mean, std = train_x.mean(0, keepdim=True), train_x.std(0, keepdim=True).clamp_min(1e-8)
        train_x, val_x = (train_x - mean) / std, (val_x - mean) / std
    if task == "classification":
        num_classes = len(class_names) if class_names else int(max(train_y.max(), val_y.max())) + 1
    else:
        num_classes = None
    return DataBundle(train=(train_x.contiguous(), train_y.contiguous()), val=(val_x.contiguous(), val_y.contiguous()),
                      input_shape=tuple(train_x.shape[1:]),
                      num_outputs=num_classes or train_y.shape[1], num_classes=num_classes, in_memory=True,
                      class_names=class_names)
