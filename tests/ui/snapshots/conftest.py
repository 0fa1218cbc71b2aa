"""What every snapshot test sees, the same on any machine: its own folder as the working directory (the
checkpoint folder shows as "checkpoints", never a tmp path), UTC dates, a fixed clock in the event log, two
CPUs, the same device list, and colour unless a test asks for NO_COLOR."""

from __future__ import annotations

import calendar
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.ui.snapshots.scripted import CHECKPOINTS
from tui_trainer.engine import devices
from tui_trainer.engine.devices import DeviceInfo
from tui_trainer.runs.registry import RunInfo, write_run_info
from tui_trainer.ui.widgets import event_log, gauges

LOG_TIME = time.struct_time((2026, 12, 1, 12, 0, 0, 1, 335, 0))
SAVED_AT = float(calendar.timegm((2026, 12, 1, 11, 0, 0)))
"""2026-12-01 11:00 UTC (the dates shown are in the TZ set below: UTC)."""
DEVICES = [DeviceInfo("auto", "best available"), DeviceInfo("cpu", "CPU (2 cores)")]


@pytest.fixture(autouse=True)
def fixed_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr(event_log, "time", SimpleNamespace(strftime=lambda form: time.strftime(form, LOG_TIME)))
    monkeypatch.setattr(gauges, "_cores", lambda: 2)
    monkeypatch.setattr(devices, "list_devices", lambda *args, **kwargs: list(DEVICES))
    zone = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    try:
        yield tmp_path
    finally:
        if zone is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = zone
        time.tzset()


def _checkpoint(path: Path, run_id: str, *, epoch: int, step: int, val_loss: float, val_accuracy: float,
                saved_at: float, reason: str, config: dict | None = None) -> None:
    """A small checkpoint as the engine writes its envelope (what the load panel lists), dated saved_at."""
    import torch

    from tui_trainer.engine.checkpoints import FORMAT, FORMAT_VERSION, save_checkpoint

    meta = {"run_id": run_id, "preset": "iris-linear", "task": "classification", "epoch": epoch, "step": step,
            "val": {"val_loss": val_loss, "val_accuracy": val_accuracy}, "train": {"train_loss": val_loss * 0.9},
            "saved_at": saved_at, "reason": reason}
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "meta": meta,
               "config": config or {"name": "iris-linear", "task": "classification"},
               "model": {"1.weight": torch.zeros(3, 4), "1.bias": torch.zeros(3)}, "trainer": {"step": step}}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, payload)
    os.utime(path, (saved_at, saved_at))


@pytest.fixture
def two_runs(fixed_world: Path) -> list[str]:
    """Two ended runs in checkpoints/: their run.json and checkpoints (an older stopped one, a newer
    finished one), dated a day apart."""
    day = 24 * 3600.0
    runs = [("iris-linear-20261130-090000", "stopped", 12, 120, SAVED_AT - day, (0.512, 0.80)),
            ("iris-linear-20261201-100000", "finished", 40, 400, SAVED_AT, (0.231, 0.967))]
    for run_id, state, epoch, step, ended_at, (val_loss, val_accuracy) in runs:
        folder = Path(CHECKPOINTS) / run_id
        _checkpoint(folder / "last.pt", run_id, epoch=epoch, step=step, val_loss=val_loss,
                    val_accuracy=val_accuracy, saved_at=ended_at, reason="last")
        _checkpoint(folder / "best.pt", run_id, epoch=epoch - 2, step=step - 20, val_loss=val_loss * 0.98,
                    val_accuracy=val_accuracy, saved_at=ended_at - 60, reason="best")
        write_run_info(RunInfo(run_id=run_id, run_dir=str(folder), preset="iris-linear", state=state, pid=4242,
                               started_at=ended_at - 3600, epoch=epoch, epochs=40, step=step, total_steps=400,
                               monitor="val_accuracy", best=val_accuracy, last_checkpoint=str(folder / "last.pt")))
    return [run_id for run_id, *_ in runs]


@pytest.fixture
def untrusted_checkpoint(fixed_world: Path) -> str:
    """A checkpoint whose stored config imports a model factory: resuming it asks whether to trust it."""
    from tui_trainer import presets

    _, raw = presets.load("iris-linear")
    raw["model"] = {"import": "my_models.nets:build_classifier", "options": {"width": 16}}
    path = Path(CHECKPOINTS) / "custom-20261201-100000" / "last.pt"
    _checkpoint(path, "custom-20261201-100000", epoch=3, step=30, val_loss=0.4, val_accuracy=0.9,
                saved_at=SAVED_AT, reason="last", config=raw)
    return str(path)
