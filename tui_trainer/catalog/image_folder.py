"""Images from a folder of class subfolders (the ImageFolder layout), decoded by Pillow in DataLoader workers.

    root/cat/001.png, root/dog/xyz.jpg, ...: a class a subfolder, its name the class's name.

Each image is converted to RGB (or grayscale), resized, scaled to [0, 1], cropped (random in training, centred
in validation), flipped at random in training, and normalized by a mean and std given or computed from the
training images. The random crop and flip are drawn from (seed, epoch, sample), so a resumed run draws the same.
Every file is opened once before training (its header only), so a file that is not an image is one line then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

from tui_trainer.catalog.data_files import DataFileError, PathOptions, first_line, folder, needs, split_order
from tui_trainer.text import printable

if TYPE_CHECKING:
    import torch

    from tui_trainer.catalog.datasets import DataBundle

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
MAX_SIDE = 4096
STATS_IMAGES = 256
"""Training images (evenly spread) that a computed mean and std are measured on."""


class ImageFolderOptions(PathOptions):
    size: list[int] | None = Field(
        None, min_length=1, max_length=2,
        description="Resize every image to [side] or [height, width]; unset: the first image's size.")
    crop: int | None = Field(None, ge=1, le=MAX_SIDE,
                             description="Crop a square of this side: at random in training, centred in validation.")
    flip: bool = Field(False, description="Flip training images left to right at random.")
    channels: Literal[1, 3] = Field(3, description="3: RGB; 1: grayscale.")
    mean: list[float] | None = Field(None, min_length=1, max_length=3,
                                     description="Per-channel mean to subtract; unset: computed from the training "
                                                 "images.")
    std: list[float] | None = Field(None, min_length=1, max_length=3,
                                    description="Per-channel std to divide by (with mean); unset: computed.")

    @field_validator("size")
    @classmethod
    def _sides(cls, size: list[int] | None) -> list[int] | None:
        if size is not None and not all(1 <= side <= MAX_SIDE for side in size):
            raise ValueError(f"given {size}; each side from 1 to {MAX_SIDE}")
        return size

    @model_validator(mode="after")
    def _consistent(self) -> ImageFolderOptions:
        if (self.mean is None) != (self.std is None):
            raise ValueError("give mean and std together, or neither (both computed)")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if values is not None and len(values) not in (1, self.channels):
                raise ValueError(f"{name} has {len(values)} values; give 1 or {self.channels} (one a channel)")
        if self.std is not None and not all(value > 0 for value in self.std):
            raise ValueError(f"std values must be above 0; given {self.std}")
        if self.crop is not None and self.size is not None and self.crop > min(self.size):
            raise ValueError(f"crop {self.crop} is larger than size {self.size}")
        return self


def _scan(option: str, path: str, classes: list[str] | None = None) -> tuple[list[str], list[str], list[int]]:
    """(class names, image files, class index of each), files sorted; classes: the training split's."""
    root = folder(f"data.options.{option}", path)
    found = sorted(entry.name for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if not found:
        raise DataFileError(f"data.options.{option}", f"{printable(path)}: no class subfolders (the layout is "
                                                      f"{printable(path)}/CLASS/IMAGE, one subfolder a class)")
    names = classes or found
    unknown = [name for name in found if name not in names]
    if unknown:
        raise DataFileError(f"data.options.{option}", f"{printable(path)}: class {printable(unknown[0])!r} is not "
                                                      "among the training classes")
    files, labels = [], []
    for name in found:
        images = sorted(str(file) for file in (root / name).rglob("*")
                        if file.suffix.lower() in IMAGE_SUFFIXES and file.is_file())
        if not images:
            raise DataFileError(f"data.options.{option}", f"{printable(root / name)}: no images (allowed: "
                                                          f"{', '.join(sorted(IMAGE_SUFFIXES))})")
        files += images
        labels += [names.index(name)] * len(images)
    return names, files, labels


def _first_size(option: str, files: list[str]) -> tuple[int, int]:
    """Open every file's header (no pixels decoded); the first one's (height, width)."""
    image_module = needs("PIL.Image", "an image folder")
    first = None
    for file in files:
        try:
            with image_module.open(file) as image:
                width, height = image.size
        except Exception as error:  # Pillow raises UnidentifiedImageError, OSError, SyntaxError, ValueError...
            raise DataFileError(f"data.options.{option}",
                                f"{printable(file)}: cannot decode as an image: {first_line(error)}") from None
        first = first or (height, width)
    assert first is not None
    return first


class ImageFolderDataset:
    """One split's images: `dataset[i]` or `dataset[(i, epoch)]` is (image [C, H, W] float32, class index).

    A (sample, epoch) key draws this sample's random crop and flip for that epoch; a plain index draws none."""

    wants_epoch = True

    def __init__(self, files: list[str], labels: list[int], size: tuple[int, int], options: ImageFolderOptions,
                 seed: int, train: bool) -> None:
        self.files, self.labels, self.size, self.seed, self.train = files, labels, size, seed, train
        self.mode = "RGB" if options.channels == 3 else "L"
        self.crop, self.flip = options.crop, options.flip and train
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.files)

    def decode(self, index: int) -> torch.Tensor:
        """The image resized, as float32 [C, H, W] in [0, 1]."""
        import numpy
        import torch
        from PIL import Image

        with Image.open(self.files[index]) as image:
            pixels = image.convert(self.mode).resize((self.size[1], self.size[0]), Image.Resampling.BILINEAR)
            array = numpy.asarray(pixels, dtype=numpy.uint8).reshape(self.size[0], self.size[1], -1)
        return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        import torch

        index, epoch = key if isinstance(key, tuple) else (key, None)
        image = self.decode(index)
        random = self.train and epoch is not None
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 10_000_019 + index) \
            if random else None
        if self.crop:
            height, width = image.shape[1:]
            if random:
                top = int(torch.randint(0, height - self.crop + 1, (), generator=generator))
                left = int(torch.randint(0, width - self.crop + 1, (), generator=generator))
            else:
                top, left = (height - self.crop) // 2, (width - self.crop) // 2
            image = image[:, top:top + self.crop, left:left + self.crop]
        if self.flip and random and bool(torch.rand((), generator=generator) < 0.5):
            image = image.flip(2)
        if self.mean is not None and self.std is not None:
            image = (image - self.mean) / self.std
        return image.contiguous(), self.labels[index]


def _stats(dataset: ImageFolderDataset, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    step = max(1, len(dataset) // STATS_IMAGES)
    images = torch.stack([dataset.decode(index) for index in range(0, len(dataset), step)[:STATS_IMAGES]])
    pixels = images.transpose(0, 1).reshape(channels, -1)
    return pixels.mean(1).reshape(-1, 1, 1), pixels.std(1).clamp_min(1e-6).reshape(-1, 1, 1)


def build_image_folder(options: ImageFolderOptions, val_split: float | None, seed: int) -> DataBundle:
    import torch

    from tui_trainer.catalog.datasets import DataBundle

    if options.path is not None:
        classes, files, labels = _scan("path", options.path)
        if len(files) < 2:
            raise DataFileError("data.options.path", f"{printable(options.path)}: needs at least 2 images to split")
        train_index, val_index = split_order(len(files), val_split or 0.2, seed)
        splits = {name: ([files[i] for i in index], [labels[i] for i in index])
                  for name, index in (("train", sorted(train_index.tolist())), ("val", sorted(val_index.tolist())))}
        option = "path"
    else:
        classes, train_files, train_labels = _scan("train", options.train or "")
        _, val_files, val_labels = _scan("val", options.val or "", classes)
        splits = {"train": (train_files, train_labels), "val": (val_files, val_labels)}
        option = "train"
    first = _first_size(option, splits["train"][0])
    if options.path is None:
        _first_size("val", splits["val"][0])
    size = (options.size[0], options.size[-1]) if options.size else first
    if options.crop is not None and options.crop > min(size):
        raise DataFileError("data.options.crop", f"{options.crop} is larger than the images' size {list(size)}")
    train = ImageFolderDataset(*splits["train"], size, options, seed, train=True)
    val = ImageFolderDataset(*splits["val"], size, options, seed, train=False)
    if options.mean is not None and options.std is not None:
        mean = torch.tensor(options.mean).reshape(-1, 1, 1).expand(options.channels, 1, 1).clone()
        std = torch.tensor(options.std).reshape(-1, 1, 1).expand(options.channels, 1, 1).clone()
    else:
        mean, std = _stats(train, options.channels)
    for dataset in (train, val):
        dataset.mean, dataset.std = mean, std
    side = (options.crop, options.crop) if options.crop else size
    return DataBundle(train=train, val=val, input_shape=(options.channels, *side), num_outputs=len(classes),
                      num_classes=len(classes), in_memory=False, class_names=tuple(printable(c) for c in classes),
                      train_labels=torch.tensor(train.labels, dtype=torch.int64))


