"""Datasets by name: offline ones (scikit-learn's bundled sets, generated data), torchvision downloads, the
user's own files (csv, parquet, jsonl, arrays, image_folder) and the user's own code (data.import).

Small sets come back as tensors (batched on the device by indexing); torchvision sets and image folders come
back as torch Datasets for a DataLoader.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from tui_trainer.catalog.options import NoOptions, Options
from tui_trainer.errors import UserError

if TYPE_CHECKING:
    import torch
    from torch.utils.data import DataLoader, Dataset

    from tui_trainer.config import DataConfig

Task = Literal["classification", "regression"]


@dataclass
class DataBundle:
    """Train and validation data plus what a model needs to fit it.

    In memory: `train`/`val` are (inputs, targets) pairs, inputs a tensor or a dict of tensors (one row a
    sample). Otherwise they are torch Datasets, or the user's own DataLoaders.
    Classification targets are class indices (int64, shape [N]); regression targets are float32 [N, k].
    """

    train: tuple[Any, torch.Tensor] | Dataset | DataLoader
    val: tuple[Any, torch.Tensor] | Dataset | DataLoader
    input_shape: tuple[int, ...]
    num_outputs: int
    num_classes: int | None
    in_memory: bool
    class_names: tuple[str, ...] | None = None
    """Each class index's name (from a file's labels or folders), for display."""
    categories: dict[str, int] | None = None
    """Index-encoded categorical columns: each one's number of embedding rows (index 0: not seen in training)."""
    train_labels: torch.Tensor | None = None
    """The class index of every training sample of a Dataset, when known without a pass (a weighted sampler)."""

    @property
    def train_size(self) -> int:
        return _size(self.train, self.in_memory)

    @property
    def val_size(self) -> int:
        return _size(self.val, self.in_memory)

    @property
    def user_loaders(self) -> bool:
        """train and val are the user's own DataLoaders, iterated as they are."""
        from torch.utils.data import DataLoader

        return isinstance(self.train, DataLoader)


def _size(split: Any, in_memory: bool) -> int:
    if in_memory:
        return len(split[1])
    from torch.utils.data import DataLoader

    return len(split.dataset) if isinstance(split, DataLoader) else len(split)


class DatasetError(UserError):
    """The data could not be had: a missing extra, a failed download, unreadable files."""

    field = "data.source"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    task: Task | None
    """None: either task (a file of the user's); the run's task says how to read its targets."""
    description: str
    image: bool | None
    """None: known only once the data is read (arrays of any shape)."""
    options: type[Options]
    build: Callable[..., DataBundle]
    """(options, val_split, seed), and the run's task too for a spec whose task is None."""
    default_val_split: float | None = 0.2


# ---------------------------------------------------------------- helpers


def _split(x: torch.Tensor, y: torch.Tensor, val_split: float, seed: int):
    import torch

    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=generator)
    n_val = max(1, round(len(x) * val_split))
    val_idx, train_idx = order[:n_val], order[n_val:]
    return (x[train_idx], y[train_idx]), (x[val_idx], y[val_idx])


def _standardize(train_x, val_x):
    mean = train_x.mean(0, keepdim=True)
    std = train_x.std(0, keepdim=True).clamp_min(1e-8)
    return (train_x - mean) / std, (val_x - mean) / std


def _tabular_bundle(x, y, task: Task, val_split: float, seed: int, *, standardize_x: bool, standardize_y: bool):
    import torch

    x = torch.as_tensor(x, dtype=torch.float32)
    if task == "classification":
        y = torch.as_tensor(y, dtype=torch.int64)
        num_classes = int(y.max().item()) + 1
    else:
        y = torch.as_tensor(y, dtype=torch.float32).reshape(-1, 1)
        num_classes = None
    (train_x, train_y), (val_x, val_y) = _split(x, y, val_split, seed)
    if standardize_x:
        train_x, val_x = _standardize(train_x, val_x)
    if standardize_y:
        train_y, val_y = _standardize(train_y, val_y)
    return DataBundle(
        train=(train_x.contiguous(), train_y.contiguous()),
        val=(val_x.contiguous(), val_y.contiguous()),
        input_shape=tuple(x.shape[1:]),
        num_outputs=num_classes or 1,
        num_classes=num_classes,
        in_memory=True,
    )


# ---------------------------------------------------------------- scikit-learn's bundled sets


def _digits(options: NoOptions, val_split: float | None, seed: int) -> DataBundle:
    from tui_trainer.catalog.sklearn_files import read_digits

    table = read_digits()  # without importing scikit-learn (1-1.5 s)
    if table is None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        table = digits.data, digits.target
    pixels, target = table
    images = pixels.reshape(-1, 1, 8, 8) / 16.0
    return _tabular_bundle(images, target, "classification", val_split or 0.2, seed,
                           standardize_x=False, standardize_y=False)


def _sklearn_table(loader_name: str, task: Task, standardize_y: bool = False, file_name: str | None = None):
    """One of scikit-learn's tables; file_name: its bundled file, read without importing scikit-learn (1-1.5 s)."""

    def build(options: NoOptions, val_split: float | None, seed: int) -> DataBundle:
        from tui_trainer.catalog.sklearn_files import read_csv_table

        table = read_csv_table(file_name) if file_name else None
        if table is None:
            import sklearn.datasets

            data = getattr(sklearn.datasets, loader_name)()
            table = data.data, data.target
        return _tabular_bundle(*table, task, val_split or 0.2, seed,
                               standardize_x=True, standardize_y=standardize_y)

    return build


# ---------------------------------------------------------------- generated sets


MIN_PER_ARM = 5
MAX_ABS_X = 1_000_000.0


class SpiralsOptions(Options):
    samples: int = Field(3000, ge=10, le=10_000_000, description="Points in all.")
    arms: int = Field(3, ge=2, le=100, description="Spiral arms, one class each.")
    noise: float = Field(0.2, ge=0, le=10, description="Standard deviation of the noise added to the angle.")
    turns: float = Field(1.5, gt=0, le=20, description="How many times each arm winds round the centre.")

    @field_validator("arms")
    @classmethod
    def _points_on_every_arm(cls, arms: int, info: ValidationInfo) -> int:
        samples = info.data.get("samples")
        if samples is not None and samples < MIN_PER_ARM * arms:
            raise ValueError(f"{arms} arms need at least {MIN_PER_ARM * arms} samples ({MIN_PER_ARM} an arm); "
                             f"given samples: {samples}")
        return arms


def _spirals(options: SpiralsOptions, val_split: float | None, seed: int) -> DataBundle:
    import torch

    generator = torch.Generator().manual_seed(seed)
    per_arm = options.samples // options.arms
    radius = torch.linspace(0.05, 1.0, per_arm).repeat(options.arms)
    arm = torch.arange(options.arms).repeat_interleave(per_arm)
    angle = (radius * options.turns * 2 * math.pi + arm * 2 * math.pi / options.arms
             + torch.randn(len(radius), generator=generator) * options.noise)
    points = torch.stack([radius * torch.sin(angle), radius * torch.cos(angle)], dim=1)
    return _tabular_bundle(points, arm, "classification", val_split or 0.2, seed,
                           standardize_x=False, standardize_y=False)


class SineOptions(Options):
    samples: int = Field(2000, ge=10, le=10_000_000, description="Points in all.")
    noise: float = Field(0.05, ge=0, le=10, description="Standard deviation of the noise added to y.")
    frequency: float = Field(1.0, gt=0, le=100, description="Periods over the x range.")
    x_range: list[Annotated[float, Field(ge=-MAX_ABS_X, le=MAX_ABS_X)]] = Field(
        [-math.pi, math.pi], min_length=2, max_length=2, description="Low and high x.")

    @field_validator("x_range")
    @classmethod
    def _low_below_high(cls, x_range: list[float]) -> list[float]:
        if not x_range[0] < x_range[1]:
            raise ValueError(f"given {x_range}; the low x comes first and must be below the high x")
        return x_range


def _sine(options: SineOptions, val_split: float | None, seed: int) -> DataBundle:
    import torch

    generator = torch.Generator().manual_seed(seed)
    low, high = options.x_range
    x = torch.rand(options.samples, 1, generator=generator) * (high - low) + low
    y = torch.sin(x * options.frequency) + torch.randn(x.shape, generator=generator) * options.noise
    return _tabular_bundle(x, y.squeeze(1), "regression", val_split or 0.2, seed,
                           standardize_x=True, standardize_y=False)


# ---------------------------------------------------------------- torchvision downloads


class VisionOptions(Options):
    root: str = Field("~/.cache/tui-trainer/datasets", min_length=1, max_length=4096,
                      description="Folder the dataset is read from and downloaded to.")
    download: bool = Field(True, description="Download the files when they are not under root.")
    subset: int | None = Field(None, ge=1, description="Use only the first N training samples.")


def _torchvision(class_name: str, mean: tuple[float, ...], std: tuple[float, ...]):
    def build(options: VisionOptions, val_split: float | None, seed: int) -> DataBundle:
        try:
            import torchvision
            from torchvision import transforms
        except ImportError as error:
            raise DatasetError(
                f"{class_name} needs torchvision: pip install 'tui-trainer[vision]' ({error})"
            ) from None
        import torch
        from torch.utils.data import Subset, random_split

        root = Path(options.root).expanduser()
        dataset_class = getattr(torchvision.datasets, class_name)
        transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
        try:
            train = dataset_class(str(root), train=True, download=options.download, transform=transform)
            test = dataset_class(str(root), train=False, download=options.download, transform=transform)
        except (OSError, RuntimeError, ValueError) as error:
            how = "download failed" if options.download else "files not found (download is off)"
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise DatasetError(f"{class_name} under {root}: {how}: {first_line}") from None
        if options.subset is not None:
            train = Subset(train, range(min(options.subset, len(train))))
        if val_split is None:
            val = test
        else:
            n_val = max(1, round(len(train) * val_split))
            train, val = random_split(train, [len(train) - n_val, n_val],
                                      generator=torch.Generator().manual_seed(seed))
        image, _ = train[0]
        return DataBundle(train=train, val=val, input_shape=tuple(image.shape), num_outputs=10,
                          num_classes=10, in_memory=False)

    return build


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [
        DatasetSpec("digits", "classification", "scikit-learn's 8x8 handwritten digits (1797 images, 10 classes)",
                    True, NoOptions, _digits),
        DatasetSpec("iris", "classification", "scikit-learn's iris flowers (150 samples, 4 features, 3 classes)",
                    False, NoOptions, _sklearn_table("load_iris", "classification", file_name="iris.csv")),
        DatasetSpec("wine", "classification", "scikit-learn's wines (178 samples, 13 features, 3 classes)",
                    False, NoOptions, _sklearn_table("load_wine", "classification", file_name="wine_data.csv")),
        DatasetSpec("breast_cancer", "classification",
                    "scikit-learn's breast cancer set (569 samples, 30 features, 2 classes)",
                    False, NoOptions,
                    _sklearn_table("load_breast_cancer", "classification", file_name="breast_cancer.csv")),
        DatasetSpec("diabetes", "regression", "scikit-learn's diabetes progression (442 samples, 10 features)",
                    False, NoOptions, _sklearn_table("load_diabetes", "regression", standardize_y=True)),
        DatasetSpec("spirals", "classification", "generated interleaved spirals (2 features, one class per arm)",
                    False, SpiralsOptions, _spirals),
        DatasetSpec("sine", "regression", "generated noisy sine wave (1 feature)", False, SineOptions, _sine),
        DatasetSpec("mnist", "classification", "MNIST handwritten digits via torchvision (downloads)",
                    True, VisionOptions, _torchvision("MNIST", (0.1307,), (0.3081,)), None),
        DatasetSpec("fashion_mnist", "classification", "Fashion-MNIST via torchvision (downloads)",
                    True, VisionOptions, _torchvision("FashionMNIST", (0.2860,), (0.3530,)), None),
        DatasetSpec("cifar10", "classification", "CIFAR-10 via torchvision (downloads)",
                    True, VisionOptions,
                    _torchvision("CIFAR10", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)), None),
    ]
}


def _file_sources() -> list[DatasetSpec]:
    from tui_trainer.catalog.arrays import ArrayOptions, build_arrays
    from tui_trainer.catalog.image_folder import ImageFolderOptions, build_image_folder
    from tui_trainer.catalog.tables import TableOptions, build_table

    def table(kind: str):
        return lambda options, val_split, seed, task: build_table(kind, options, val_split, seed, task)

    return [
        DatasetSpec("csv", None, "your CSV file: a target column, feature columns (needs the data extra)",
                    False, TableOptions, table("csv")),
        DatasetSpec("parquet", None, "your Parquet file: a target column, feature columns (needs the data extra)",
                    False, TableOptions, table("parquet")),
        DatasetSpec("jsonl", None, "your JSON Lines file: a target column, feature columns (needs the data extra)",
                    False, TableOptions, table("jsonl")),
        DatasetSpec("arrays", None, "your .npz, .npy or .pt files of arrays: x and y (or x_train ... y_val)",
                    None, ArrayOptions, build_arrays),
        DatasetSpec("image_folder", "classification",
                    "your folder of class subfolders of images (needs the data extra)",
                    True, ImageFolderOptions, build_image_folder),
    ]


DATASETS.update({spec.name: spec for spec in _file_sources()})


def build_dataset(source: str, options: dict[str, Any], val_split: float | None, seed: int,
                  task: str | None = None) -> DataBundle:
    """The named source's data; task says how to read a file's targets (unset: the source's own, or
    classification)."""
    spec = DATASETS[source]
    validated = spec.options.model_validate(options)
    if spec.task is None:
        return spec.build(validated, val_split, seed, task or "classification")
    return spec.build(validated, val_split, seed)


def build_data(data: DataConfig, task: str, seed: int) -> DataBundle:
    """A run's data: its source by name, or the user's own code (data.import)."""
    if data.import_target:
        from tui_trainer.catalog.data_import import build_imported_data

        return build_imported_data(data.import_target, data.options, data.val_split, seed, task)
    return build_dataset(data.source or "", data.options, data.val_split, seed, task)
