"""Shared fixtures: tiny run configs in a temporary folder, a trainer runner that collects events,
user model modules on sys.path, the gpu marker's skip, and the fuzzing counts in the summary."""

from __future__ import annotations

import itertools
import textwrap
from collections import Counter
from pathlib import Path

import pytest

FUZZ_COUNTS: Counter[str] = Counter()
"""Examples each hypothesis test ran, by test name; printed at the end of the session."""

_module_ids = itertools.count()


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if any("gpu" in item.keywords for item in items) and not _cuda_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    if FUZZ_COUNTS:
        terminalreporter.section("hypothesis examples run")
        for name, count in sorted(FUZZ_COUNTS.items()):
            terminalreporter.write_line(f"{name}: {count}")


@pytest.fixture(autouse=True)
def _no_user_presets(tmp_path_factory, monkeypatch):
    """No test sees the presets of the person running it: an empty config home, no preset folders."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config-home")))
    monkeypatch.delenv("TUI_TRAINER_PRESETS", raising=False)


@pytest.fixture(scope="session")
def fuzz_counts() -> Counter[str]:
    """`fuzz_counts[name] += 1` once per example; the counts show in the terminal summary."""
    return FUZZ_COUNTS


@pytest.fixture
def checkpoint_dir(tmp_path) -> Path:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    return folder


@pytest.fixture
def make_config(checkpoint_dir):
    """A shipped preset with dotted overrides, on the CPU, saving under tmp_path."""
    from tui_trainer import presets

    def make(preset: str = "digits-mlp", overrides: dict | None = None, **dotted):
        """dotted: `data__batch_size=8` sets data.batch_size; a whole section replaces the preset's."""
        values = {**(overrides or {}), **{key.replace("__", "."): value for key, value in dotted.items()}}
        if isinstance(values.get("checkpoint"), dict):
            values["checkpoint"] = {"dir": str(checkpoint_dir), **values["checkpoint"]}
        return presets.load_config(preset, {"device": "cpu", "checkpoint.dir": str(checkpoint_dir), **values})

    return make


class Recorder:
    """Collects a run's events; `of(cls)` filters them by type."""

    def __init__(self) -> None:
        self.events: list = []
        self.handlers: list = []

    def __call__(self, event) -> None:
        self.events.append(event)
        for handler in self.handlers:
            handler(event)

    def of(self, cls) -> list:
        return [event for event in self.events if isinstance(event, cls)]

    def states(self) -> list[str]:
        from tui_trainer.engine.events import StateChanged

        return [event.state for event in self.of(StateChanged)]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def run_trainer():
    """Run a Trainer to the end in this thread; returns (RunFinished, Recorder, Trainer)."""
    from tui_trainer.engine.trainer import Trainer

    def run(config, *, handler=None, **kwargs):
        events = Recorder()
        trainer = Trainer(config, events, **kwargs)
        if handler is not None:
            events.handlers.append(lambda event: handler(event, trainer))
        finished = trainer.run()
        return finished, events, trainer

    return run


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """Write a Python module into tmp_path, put it on sys.path, and return its (unique) name."""
    folder = tmp_path / "user_modules"
    folder.mkdir(exist_ok=True)
    monkeypatch.syspath_prepend(str(folder))

    def write(source: str) -> str:
        name = f"user_module_{next(_module_ids)}"
        (folder / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        return name

    return write


FAKE_TORCHVISION = {
    "__init__.py": "from . import datasets, transforms\n__version__ = '0.0-fake'\n",
    "transforms.py": """
class Compose:
    def __init__(self, steps):
        self.steps = steps

    def __call__(self, value):
        for step in self.steps:
            value = step(value)
        return value


class ToTensor:
    def __call__(self, value):
        return value


class Normalize:
    def __init__(self, mean, std):
        self.mean, self.std = mean[0], std[0]

    def __call__(self, value):
        return (value - self.mean) / self.std
""",
    "datasets.py": """
import os
import urllib.error

import torch
from torch.utils.data import Dataset


class _Images(Dataset):
    shape = (1, 8, 8)

    def __init__(self, root, train=True, download=False, transform=None):
        failure = os.environ.get("FAKE_TORCHVISION_FAIL", "")
        if failure == "download" and download:
            raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
        if failure == "missing" and not download:
            raise RuntimeError("Dataset not found. You can use download=True to download it")
        size = int(os.environ.get("FAKE_TORCHVISION_SIZE", "96")) if train else 48
        generator = torch.Generator().manual_seed(1 if train else 2)
        self.targets = torch.arange(size) % 10
        # Each class is a bright square in its own place, so a small CNN learns it quickly.
        self.data = torch.rand((size, *self.shape), generator=generator) * 0.2
        for index, target in enumerate(self.targets.tolist()):
            row, col = divmod(target, 4)
            self.data[index, :, row * 2:row * 2 + 2, col * 2:col * 2 + 2] += 1.0
        self.transform = transform

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        image = self.data[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])


class MNIST(_Images):
    pass


class FashionMNIST(_Images):
    pass


class CIFAR10(_Images):
    shape = (3, 8, 8)
""",
}


@pytest.fixture
def fake_torchvision(tmp_path, monkeypatch):
    """A stand-in torchvision package (datasets and transforms only) on sys.path, in place of any real one.

    FAKE_TORCHVISION_FAIL=download|missing makes its datasets fail the way torchvision's do.
    Returns the folder to put on PYTHONPATH for a subprocess."""
    import sys

    folder = tmp_path / "fake_vision"
    package = folder / "torchvision"
    package.mkdir(parents=True)
    for name, source in FAKE_TORCHVISION.items():
        (package / name).write_text(textwrap.dedent(source), encoding="utf-8")
    for name in [name for name in sys.modules if name == "torchvision" or name.startswith("torchvision.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    for name in [name for name in sys.modules if name == "torchvision" or name.startswith("torchvision.")]:
        del sys.modules[name]
