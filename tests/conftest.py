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
        values = {"device": "cpu", "checkpoint.dir": str(checkpoint_dir)}
        values.update(overrides or {})
        values.update({key.replace("__", "."): value for key, value in dotted.items()})
        return presets.load_config(preset, values)

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
