"""Datasets: the offline ones load with the right shapes and types; torchvision ones read their own files,
and fail with one clear line when the extra or the files are missing."""

from __future__ import annotations

import hashlib
import pickle
import struct
import sys

import numpy as np
import pytest
import torch

from tui_trainer.catalog.datasets import DATASETS, DatasetError, build_dataset

OFFLINE = {
    # name: (task, input shape, classes or None, samples in all)
    "digits": ("classification", (1, 8, 8), 10, 1797),
    "iris": ("classification", (4,), 3, 150),
    "wine": ("classification", (13,), 3, 178),
    "breast_cancer": ("classification", (30,), 2, 569),
    "diabetes": ("regression", (10,), None, 442),
    "spirals": ("classification", (2,), 3, 3000),
    "sine": ("regression", (1,), None, 2000),
}
VISION = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10"}


@pytest.mark.parametrize("name", list(OFFLINE))
def test_offline_dataset_shapes_and_types(name):
    task, shape, classes, total = OFFLINE[name]
    assert DATASETS[name].task == task
    bundle = build_dataset(name, {}, None, seed=0)
    assert bundle.in_memory
    (train_x, train_y), (val_x, val_y) = bundle.train, bundle.val
    assert bundle.train_size + bundle.val_size == total
    assert bundle.val_size == round(total * 0.2)
    assert bundle.input_shape == shape
    assert train_x.shape == (bundle.train_size, *shape) and val_x.shape == (bundle.val_size, *shape)
    assert train_x.dtype == val_x.dtype == torch.float32
    assert train_x.is_contiguous() and torch.isfinite(train_x).all()
    if task == "classification":
        assert train_y.dtype == val_y.dtype == torch.int64
        assert train_y.shape == (bundle.train_size,)
        assert bundle.num_classes == bundle.num_outputs == classes
        assert set(train_y.tolist()) == set(range(classes))
    else:
        assert train_y.dtype == torch.float32 and train_y.shape == (bundle.train_size, 1)
        assert bundle.num_classes is None and bundle.num_outputs == 1


@pytest.mark.parametrize("name", ["iris", "wine", "breast_cancer", "diabetes", "sine"])
def test_tabular_inputs_are_standardised_on_the_training_split(name):
    bundle = build_dataset(name, {}, None, seed=0)
    train_x = bundle.train[0]
    torch.testing.assert_close(train_x.mean(0), torch.zeros(train_x.shape[1]), atol=1e-4, rtol=0)
    torch.testing.assert_close(train_x.std(0), torch.ones(train_x.shape[1]), atol=1e-4, rtol=0)


def test_digits_pixels_are_in_unit_range_and_diabetes_targets_standardised():
    digits = build_dataset("digits", {}, None, seed=0)
    assert digits.train[0].min() >= 0 and digits.train[0].max() <= 1
    diabetes = build_dataset("diabetes", {}, None, seed=0)
    assert abs(diabetes.train[1].mean().item()) < 1e-4 and abs(diabetes.train[1].std().item() - 1) < 1e-4


def test_split_follows_seed_and_val_split():
    first = build_dataset("iris", {}, 0.3, seed=5)
    again = build_dataset("iris", {}, 0.3, seed=5)
    other = build_dataset("iris", {}, 0.3, seed=6)
    assert first.val_size == 45 and first.train_size == 105
    assert torch.equal(first.train[0], again.train[0]) and torch.equal(first.val[1], again.val[1])
    assert not torch.equal(first.val[0], other.val[0])


def test_generated_data_takes_its_options():
    spirals = build_dataset("spirals", {"samples": 500, "arms": 5, "noise": 0.0, "turns": 2.0}, 0.2, seed=1)
    assert spirals.num_classes == 5 and spirals.train_size + spirals.val_size == 500
    sine = build_dataset("sine", {"samples": 300, "noise": 0.0, "frequency": 2.0, "x_range": [0.0, 1.0]}, 0.5, seed=1)
    assert sine.train_size == 150
    assert torch.equal(build_dataset("sine", {"samples": 300}, 0.5, seed=1).val[1],
                       build_dataset("sine", {"samples": 300}, 0.5, seed=1).val[1])


@pytest.mark.parametrize("name", list(VISION))
def test_vision_datasets_are_images_without_a_default_split(name):
    spec = DATASETS[name]
    assert spec.image and spec.task == "classification" and spec.default_val_split is None


# ---------------------------------------------------------------- torchvision missing or failing


@pytest.mark.parametrize("name", list(VISION))
def test_without_torchvision_one_line_names_the_vision_extra(name, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(DatasetError) as caught:
        build_dataset(name, {"root": str(tmp_path), "download": False}, None, seed=0)
    text = str(caught.value)
    assert len(text.splitlines()) == 1
    assert text.startswith(f"{VISION[name]} needs torchvision")
    assert "pip install 'tui-trainer[vision]'" in text


def test_without_torchvision_a_run_fails_before_training(monkeypatch, make_config, recorder):
    from tui_trainer.engine.trainer import Trainer

    monkeypatch.setitem(sys.modules, "torchvision", None)
    config = make_config("mnist-cnn", {"data.options.download": False})
    with pytest.raises(DatasetError, match=r"\[vision\]"):
        Trainer(config, recorder).run()
    assert "running" not in recorder.states()


def test_failed_download_is_one_line(fake_torchvision, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_TORCHVISION_FAIL", "download")
    with pytest.raises(DatasetError) as caught:
        build_dataset("mnist", {"root": str(tmp_path / "data")}, None, seed=0)
    text = str(caught.value)
    assert len(text.splitlines()) == 1
    assert text.startswith(f"MNIST under {tmp_path / 'data'}: download failed: ")
    assert "name resolution" in text


def test_missing_files_with_download_off_is_one_line(fake_torchvision, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_TORCHVISION_FAIL", "missing")
    with pytest.raises(DatasetError) as caught:
        build_dataset("cifar10", {"root": str(tmp_path), "download": False}, None, seed=0)
    text = str(caught.value)
    assert len(text.splitlines()) == 1
    assert "CIFAR10 under" in text and "files not found (download is off)" in text and "Dataset not found" in text


def test_root_expands_the_home_folder(fake_torchvision, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("FAKE_TORCHVISION_FAIL", "missing")
    with pytest.raises(DatasetError) as caught:
        build_dataset("mnist", {"root": "~/datasets", "download": False}, None, seed=0)
    assert f"under {tmp_path / 'datasets'}:" in str(caught.value)


def test_vision_splits_and_subset(fake_torchvision):
    official = build_dataset("fashion_mnist", {"download": False}, None, seed=0)
    assert not official.in_memory and official.train_size == 96 and official.val_size == 48
    assert official.input_shape == (1, 8, 8) and official.num_classes == 10
    split = build_dataset("mnist", {"download": False, "subset": 40}, 0.25, seed=0)
    assert split.train_size == 30 and split.val_size == 10
    image, label = split.train[0]
    assert image.shape == (1, 8, 8) and isinstance(label, int)


# ---------------------------------------------------------------- real torchvision on files in its own format


def write_idx(path, array: np.ndarray) -> None:
    """The idx format MNIST ships in: magic (0, 0, type 0x08 = ubyte, dims), big-endian sizes, raw bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist_files(root, folder: str, train: int, test: int):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", train), ("t10k", test)):
        labels = np.arange(count) % 10
        images = rng.integers(0, 40, size=(count, 28, 28))
        for index, label in enumerate(labels):
            images[index, 2 * label:2 * label + 6, 4:24] = 255
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return labels


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_mnist_reads_idx_files(name, tmp_path):
    pytest.importorskip("torchvision")
    write_mnist_files(tmp_path, VISION[name], train=50, test=20)
    bundle = build_dataset(name, {"root": str(tmp_path), "download": False}, None, seed=0)
    assert not bundle.in_memory
    assert bundle.train_size == 50 and bundle.val_size == 20
    assert bundle.input_shape == (1, 28, 28) and bundle.num_classes == 10
    image, label = bundle.train[3]
    assert image.dtype == torch.float32 and image.shape == (1, 28, 28) and label == 3
    assert image.max() > 2, "normalised with the dataset's mean and std"
    subset = build_dataset(name, {"root": str(tmp_path), "download": False, "subset": 30}, 0.2, seed=0)
    assert subset.train_size == 24 and subset.val_size == 6


def test_mnist_files_missing_with_download_off(tmp_path):
    pytest.importorskip("torchvision")
    with pytest.raises(DatasetError) as caught:
        build_dataset("mnist", {"root": str(tmp_path), "download": False}, None, seed=0)
    text = str(caught.value)
    assert len(text.splitlines()) == 1 and "files not found (download is off)" in text


def test_cifar10_reads_pickled_batches(tmp_path, monkeypatch):
    torchvision = pytest.importorskip("torchvision")
    cifar = torchvision.datasets.CIFAR10
    folder = tmp_path / cifar.base_folder
    folder.mkdir()
    rng = np.random.default_rng(0)

    def batch(name, count):
        labels = [index % 10 for index in range(count)]
        data = rng.integers(0, 256, size=(count, 3 * 32 * 32), dtype=np.uint8)
        with (folder / name).open("wb") as file:
            pickle.dump({"data": data, "labels": labels, "batch_label": name}, file)
        return [name, hashlib.md5((folder / name).read_bytes()).hexdigest()]

    train_list = [batch(f"data_batch_{index}", 6) for index in range(1, 6)]
    test_list = [batch("test_batch", 10)]
    with (folder / "batches.meta").open("wb") as file:
        pickle.dump({"label_names": [f"class{index}" for index in range(10)]}, file)
    meta = {**cifar.meta, "md5": hashlib.md5((folder / "batches.meta").read_bytes()).hexdigest()}
    # torchvision checks every file against the md5 sums of the real CIFAR-10 release; these are our
    # small files, so the lists of expected sums are swapped for theirs (the check itself still runs).
    monkeypatch.setattr(cifar, "train_list", train_list)
    monkeypatch.setattr(cifar, "test_list", test_list)
    monkeypatch.setattr(cifar, "meta", meta)

    bundle = build_dataset("cifar10", {"root": str(tmp_path), "download": False}, None, seed=0)
    assert bundle.train_size == 30 and bundle.val_size == 10
    assert bundle.input_shape == (3, 32, 32) and bundle.num_outputs == 10
    image, label = bundle.val[7]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and label == 7


def test_mnist_preset_trains_on_local_files(tmp_path, make_config, run_trainer):
    pytest.importorskip("torchvision")
    write_mnist_files(tmp_path / "data", "MNIST", train=64, test=32)
    config = make_config("mnist-cnn", {"data.options.root": str(tmp_path / "data"), "data.options.download": False,
                                       "data.num_workers": 0, "data.batch_size": 16, "epochs": 2,
                                       "model.options.channels": [4], "model.options.hidden": 8})
    finished, _, trainer = run_trainer(config)
    assert finished.state == "finished" and finished.step == 8
    assert not trainer.data.in_memory and trainer.data.input_shape == (1, 28, 28)
