"""The user's own files as data sources: tables (CSV, Parquet, JSON Lines), arrays (.npz, .npy, .pt) and image
folders, each from a small file the test writes itself; bad files end in one line naming the field."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from tui_trainer.catalog.data_files import DataFileError
from tui_trainer.catalog.datasets import build_dataset
from tui_trainer.config import ConfigError, config_from_dict

pandas = pytest.importorskip("pandas")
Image = pytest.importorskip("PIL.Image")


def table(rows: int = 60, seed: int = 0) -> pandas.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pandas.DataFrame({
        "size": rng.normal(10, 3, rows),
        "weight": rng.normal(-5, 2, rows),
        "colour": rng.choice(["red", "green", "blue"], rows),
    })
    frame["kind"] = np.where(frame["size"] > 10, "big", "small")
    frame.loc[::6, "colour"] = None  # in both splits
    frame.loc[3, "weight"] = np.nan
    return frame


WRITERS = {
    "csv": lambda frame, path: frame.to_csv(path, index=False),
    "parquet": lambda frame, path: frame.to_parquet(path),
    "jsonl": lambda frame, path: frame.to_json(path, orient="records", lines=True),
}


@pytest.mark.parametrize("kind", ["csv", "parquet", "jsonl"])
def test_a_table_becomes_standardized_features_and_named_classes(tmp_path, kind):
    if kind == "parquet":
        pytest.importorskip("pyarrow")
    path = tmp_path / f"table.{kind}"
    WRITERS[kind](table(), path)
    data = build_dataset(kind, {"path": str(path), "target": "kind"}, 0.25, seed=0, task="classification")
    assert data.in_memory and data.class_names == ("big", "small") and data.num_classes == 2
    (train_x, train_y), (val_x, val_y) = data.train, data.val
    assert len(train_y) == 45 and len(val_y) == 15 and train_y.dtype == torch.int64
    # size, weight, then one-hot red/green/blue/<missing> (categories sorted; missing is its own)
    assert data.input_shape == (2 + 4,) and train_x.dtype == torch.float32
    torch.testing.assert_close(train_x[:, :2].mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(train_x[:, :2].std(0, unbiased=False), torch.ones(2), atol=1e-4, rtol=0)
    assert set(train_x[:, 2:].sum(1).tolist()) == {1.0}, "each row has exactly one category"
    assert not train_x.isnan().any() and not val_x.isnan().any(), "missing values are filled"


def test_statistics_come_from_the_training_file_only(tmp_path):
    train, val = table(50, seed=1), table(20, seed=2)
    val["size"] += 100  # a validation set far off: standardizing it by its own stats would hide that
    WRITERS["csv"](train, tmp_path / "train.csv")
    WRITERS["csv"](val, tmp_path / "val.csv")
    data = build_dataset("csv", {"train": str(tmp_path / "train.csv"), "val": str(tmp_path / "val.csv"),
                                 "target": "kind", "features": ["size", "colour"]}, None, 0, "classification")
    assert len(data.train[1]) == 50 and len(data.val[1]) == 20
    assert data.input_shape == (1 + 4,)
    assert data.val[0][:, 0].mean() > 20, "validation scaled by the training mean and std"


def test_index_encoding_gives_a_dict_of_numeric_and_categorical_tensors(tmp_path):
    WRITERS["csv"](table(), tmp_path / "t.csv")
    data = build_dataset("csv", {"path": str(tmp_path / "t.csv"), "target": "kind", "encoding": "index"},
                         0.2, 0, "classification")
    inputs, _ = data.train
    assert set(inputs) == {"numeric", "categorical"}
    assert inputs["numeric"].shape[1] == 2 and inputs["categorical"].dtype == torch.int64
    assert data.categories == {"colour": 5}, "4 categories and index 0 for one not seen in training"
    assert inputs["categorical"].min() >= 1, "every training value was seen in training"
    assert data.train_size == len(data.train[1])


def test_missing_values_by_the_stated_rule(tmp_path):
    WRITERS["csv"](table(), tmp_path / "t.csv")
    options = {"path": str(tmp_path / "t.csv"), "target": "kind"}
    dropped = build_dataset("csv", {**options, "missing": "drop"}, 0.2, 0, "classification")
    assert dropped.train_size + dropped.val_size == 60 - 10 - 1
    with pytest.raises(DataFileError) as error:
        build_dataset("csv", {**options, "missing": "error"}, 0.2, 0, "classification")
    assert error.value.field == "data.options.missing" and "'weight' has 1 missing" in str(error.value)


def test_a_regression_target_and_integer_class_labels(tmp_path):
    frame = table()
    frame["label"] = (frame["size"] > 10).astype(int) * 3  # classes 0 and 3: indices 0 and 1, names kept
    WRITERS["csv"](frame, tmp_path / "t.csv")
    regression = build_dataset("csv", {"path": str(tmp_path / "t.csv"), "target": "size",
                                       "features": ["weight"]}, 0.2, 0, "regression")
    assert regression.train[1].shape == (48, 1) and regression.train[1].dtype == torch.float32
    classes = build_dataset("csv", {"path": str(tmp_path / "t.csv"), "target": "label", "features": ["weight"]},
                            0.2, 0, "classification")
    assert classes.class_names == ("0", "3") and set(classes.train[1].tolist()) == {0, 1}


@pytest.mark.parametrize("options, field, fragment", [
    ({"path": "nope.csv", "target": "kind"}, "data.options.path", "no such file"),
    ({"path": "t.csv", "target": "nope"}, "data.options.target", "'nope' is not a column"),
    ({"path": "t.csv", "target": "kind", "features": ["size", "height"]}, "data.options.features", "'height'"),
    ({"path": "broken.csv", "target": "kind"}, "data.options.path", "cannot read as CSV"),
    ({"path": "t.csv", "target": "kind", "categorical": []}, "data.options.categorical", "not a number"),
])
def test_bad_tables_are_one_line(tmp_path, monkeypatch, options, field, fragment):
    monkeypatch.chdir(tmp_path)
    WRITERS["csv"](table(), tmp_path / "t.csv")
    (tmp_path / "broken.csv").write_text('a,b\n1,2,3\n"never closed\n')
    with pytest.raises(DataFileError) as error:
        build_dataset("csv", options, 0.2, 0, "classification")
    assert error.value.field == field and fragment in str(error.value) and "\n" not in str(error.value)


def test_a_column_of_ids_is_refused_for_one_hot(tmp_path):
    frame = table(1200)
    frame["customer"] = [f"c{index}" for index in range(1200)]
    WRITERS["csv"](frame, tmp_path / "t.csv")
    with pytest.raises(DataFileError) as error:
        build_dataset("csv", {"path": str(tmp_path / "t.csv"), "target": "kind"}, 0.1, 0, "classification")
    assert error.value.field == "data.options.encoding" and "'customer' has 1080 categories" in str(error.value)
    data = build_dataset("csv", {"path": str(tmp_path / "t.csv"), "target": "kind", "encoding": "index"},
                         0.1, 0, "classification")
    assert data.categories["customer"] == 1081


def test_table_options_are_validated_in_the_config():
    base = {"task": "classification", "model": {"name": "mlp"}, "loss": {"name": "cross_entropy"}}
    for options, fragment in [({"target": "y"}, "give path, or both train and val"),
                              ({"path": "a.csv"}, "target"),
                              ({"path": "a.csv", "target": "y", "encoding": "hash"}, "'onehot' or 'index'"),
                              ({"path": "a.csv", "target": "y", "missing": "guess"}, "'fill', 'drop' or 'error'")]:
        with pytest.raises(ConfigError) as error:
            config_from_dict({**base, "data": {"source": "csv", "options": options}}, source="p.yaml")
        assert "p.yaml" in str(error.value) and "data.options" in str(error.value) and fragment in str(error.value)


# ---------------------------------------------------------------- arrays


def test_arrays_from_an_npz_with_x_and_y(tmp_path):
    x = np.random.default_rng(0).normal(size=(40, 3, 4, 4)).astype("float32")
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(40) % 4)
    data = build_dataset("arrays", {"path": str(tmp_path / "d.npz")}, 0.25, 0, "classification")
    assert data.input_shape == (3, 4, 4) and data.num_classes == 4 and data.train_size == 30
    assert torch.equal(torch.sort(torch.cat([data.train[1], data.val[1]])).values, torch.arange(40) // 10)


def test_arrays_with_their_own_split_and_text_labels(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.normal(size=(20, 2)), y_train=np.array(["cat", "dog"] * 10),
             x_val=rng.normal(size=(6, 2)), y_val=np.array(["dog"] * 6))
    data = build_dataset("arrays", {"path": str(tmp_path / "d.npz")}, None, 0, "classification")
    assert data.train_size == 20 and data.val_size == 6 and data.class_names == ("cat", "dog")
    assert data.val[1].tolist() == [1] * 6


def test_arrays_from_npy_and_pt_files(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((10, 5), dtype="float32"))
    torch.save(torch.linspace(0, 1, 10), tmp_path / "y.pt")
    data = build_dataset("arrays", {"x": str(tmp_path / "x.npy"), "y": str(tmp_path / "y.pt")}, 0.2, 0,
                         "regression")
    assert data.input_shape == (5,) and data.train[1].shape == (8, 1) and data.num_outputs == 1
    torch.save({"x": torch.zeros(8, 2), "y": torch.tensor([0, 1] * 4)}, tmp_path / "both.pt")
    assert build_dataset("arrays", {"path": str(tmp_path / "both.pt")}, 0.25, 0, "classification").num_classes == 2


class Planted:
    def __reduce__(self):
        return (print, ("ran",))


def test_array_files_never_unpickle(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.array([Planted(), 1], dtype=object), allow_pickle=True)
    np.save(tmp_path / "y.npy", np.zeros(2))
    with pytest.raises(DataFileError) as error:
        build_dataset("arrays", {"x": str(tmp_path / "x.npy"), "y": str(tmp_path / "y.npy")}, 0.5, 0, "regression")
    assert error.value.field == "data.options.x" and "cannot read" in str(error.value)
    (tmp_path / "d.pt").write_bytes(pickle.dumps({"x": Planted(), "y": 1}, protocol=2))
    with pytest.raises(DataFileError):
        build_dataset("arrays", {"path": str(tmp_path / "d.pt")}, 0.5, 0, "regression")
    assert "ran" not in capsys.readouterr().out


def test_an_npz_without_the_named_arrays_is_one_line(tmp_path):
    np.savez(tmp_path / "d.npz", features=np.zeros((4, 2)), labels=np.zeros(4))
    with pytest.raises(DataFileError) as error:
        build_dataset("arrays", {"path": str(tmp_path / "d.npz")}, 0.5, 0, "classification")
    assert "needs arrays x and y" in str(error.value) and "features, labels" in str(error.value)


# ---------------------------------------------------------------- image folders


def image_folder(root, classes=("cat", "dog"), per_class=5, size=(12, 10)):
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            pixels = rng.integers(0, 255, (size[0], size[1], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{index}.png")
    return root


def test_an_image_folder_is_a_dataset_of_class_subfolders(tmp_path):
    image_folder(tmp_path / "images")
    data = build_dataset("image_folder", {"path": str(tmp_path / "images"), "size": [8], "crop": 6, "flip": True},
                         0.2, 0, "classification")
    assert not data.in_memory and data.class_names == ("cat", "dog") and data.input_shape == (3, 6, 6)
    assert len(data.train) == 8 and len(data.val) == 2
    image, label = data.train[(0, 1)]
    assert image.shape == (3, 6, 6) and image.dtype == torch.float32 and label in (0, 1)
    assert torch.equal(data.train[(0, 1)][0], image), "a sample's augmentation is a function of (sample, epoch)"
    assert any(not torch.equal(data.train[(0, epoch)][0], image) for epoch in range(2, 8))
    assert torch.equal(data.val[0][0], data.val[0][0])


def test_given_normalization_and_separate_folders(tmp_path):
    image_folder(tmp_path / "train")
    image_folder(tmp_path / "val", classes=("dog",), per_class=2)
    data = build_dataset("image_folder", {"train": str(tmp_path / "train"), "val": str(tmp_path / "val"),
                                          "channels": 1, "mean": [0.5], "std": [0.5]}, None, 0, "classification")
    assert data.input_shape == (1, 12, 10) and len(data.val) == 2
    image, label = data.val[0]
    assert label == 1 and image.min() >= -1 and image.max() <= 1


def test_bad_image_folders_are_one_line(tmp_path):
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.png").write_bytes(b"")
    with pytest.raises(DataFileError, match="no class subfolders"):
        build_dataset("image_folder", {"path": str(tmp_path / "flat")}, 0.2, 0, "classification")
    image_folder(tmp_path / "broken")
    (tmp_path / "broken" / "cat" / "zz.jpg").write_text("not an image")
    with pytest.raises(DataFileError) as error:
        build_dataset("image_folder", {"path": str(tmp_path / "broken")}, 0.2, 0, "classification")
    assert "zz.jpg: cannot decode as an image" in str(error.value)
    with pytest.raises(DataFileError, match="no such folder"):
        build_dataset("image_folder", {"path": str(tmp_path / "nope")}, 0.2, 0, "classification")
