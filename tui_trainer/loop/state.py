"""What a script's run saves and continues from, and how its live changes reach the script's own optimizer and
scheduler.

A checkpoint is the project's own format (engine.checkpoints: written atomically, loaded with weights_only,
listed by `tui-trainer checkpoints`), holding what the script registered: model, optimizer, scheduler, grad
scaler, the user's `extra` dict, the loop's counters, random states and the metric history.
"""

from __future__ import annotations

import json
import math
import pickle
import platform
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from tui_trainer import __version__
from tui_trainer.engine import checkpoints
from tui_trainer.engine.checkpoints import SCRIPT_RUN_KIND, CheckpointError

SCRIPT_KIND = SCRIPT_RUN_KIND
"""trainer.kind in a checkpoint a script's run wrote (a preset's run has none)."""


def as_data(value: Any, depth: int = 0) -> Any:
    """A user's config as plain data (YAML and JSON): numbers, text, flags, None, lists and dicts with text
    keys; anything else (a Path, an enum, a class) as its str()."""
    if depth > 20:
        return str(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(key): as_data(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [as_data(item, depth + 1) for item in value]
    return str(value)


# ---------------------------------------------------------------- live hyperparameters


def base_lr(optimizer: torch.optim.Optimizer, scheduler: Any | None) -> float:
    """The learning rate the user set (the schedule's peak or base), not this step's value."""
    from torch.optim import lr_scheduler

    group = optimizer.param_groups[0]
    if isinstance(scheduler, lr_scheduler.OneCycleLR):
        return float(group["max_lr"])
    base = getattr(scheduler, "base_lrs", None)
    return float(base[0]) if base else float(group["lr"])


def set_base_lr(optimizer: torch.optim.Optimizer, scheduler: Any | None, lr: float) -> None:
    """Scale the run's learning rate to lr now, schedule and all: each group's values (and the scheduler's base
    values) by one ratio, so the scheduler's next step goes on along its own shape from the new value and does
    not put the old one back. OneCycleLR keeps its bounds in the groups (max_lr, initial_lr, min_lr)."""
    from torch.optim import lr_scheduler

    ratio = lr / base_lr(optimizer, scheduler)
    keys = ("max_lr", "initial_lr", "min_lr", "lr") if isinstance(scheduler, lr_scheduler.OneCycleLR) \
        else ("initial_lr", "lr")
    for group in optimizer.param_groups:
        for key in keys:
            if isinstance(group.get(key), (int, float)):
                group[key] *= ratio
    if getattr(scheduler, "base_lrs", None):
        scheduler.base_lrs = [value * ratio for value in scheduler.base_lrs]
    last = getattr(scheduler, "_last_lr", None)
    if last:
        scheduler._last_lr = [float(group["lr"]) for group in optimizer.param_groups]


def change_hyperparameters(optimizer: torch.optim.Optimizer, scheduler: Any | None, requested: dict[str, float]
                           ) -> tuple[dict[str, float], dict[str, float], list[str]]:
    """Apply requested (checked against their bounds already, by Controls). Returns what changed, the values
    before, and one line for each one this optimizer has no setting for."""
    changes, previous, refused = {}, {}, []
    group = optimizer.param_groups[0]
    for key, value in requested.items():
        if key == "lr":
            previous[key] = base_lr(optimizer, scheduler)
            set_base_lr(optimizer, scheduler, value)
        elif key in group and isinstance(group[key], (int, float)) and not isinstance(group[key], bool):
            previous[key] = float(group[key])
            for each in optimizer.param_groups:
                each[key] = value
        else:
            refused.append(f"{type(optimizer).__name__} has no {key}; unchanged")
            continue
        changes[key] = value
    return changes, previous, refused


def optimizer_settings(optimizer: torch.optim.Optimizer | None, scheduler: Any | None) -> dict[str, Any]:
    """The optimizer's name and live-tunable settings, as a run's config shows them."""
    if optimizer is None:
        return {}
    group = optimizer.param_groups[0]
    settings: dict[str, Any] = {"name": type(optimizer).__name__, "lr": base_lr(optimizer, scheduler)}
    for key in ("weight_decay", "momentum"):
        if isinstance(group.get(key), (int, float)):
            settings[key] = float(group[key])
    return settings


# ---------------------------------------------------------------- checkpoints


def weights_finite(model: torch.nn.Module) -> bool:
    checks = [torch.isfinite(p).all() for p in model.parameters()]
    return bool(torch.stack([check.to(checks[0].device) for check in checks]).all()) if checks else True


def payload(*, run_id: str, name: str, config: dict[str, Any], reason: str, model: torch.nn.Module,
            optimizer: torch.optim.Optimizer | None, scheduler: Any | None, scaler: Any | None,
            extra: dict[str, Any] | None, trainer: dict[str, Any], history_json: str) -> dict[str, Any]:
    complete = trainer["position"] == 0
    return {
        "format": checkpoints.FORMAT,
        "format_version": checkpoints.FORMAT_VERSION,
        "meta": {
            "run_id": run_id, "preset": name, "task": SCRIPT_KIND,
            "epoch": trainer["epoch"] - 1 if complete else trainer["epoch"], "epoch_complete": complete,
            "step": trainer["step"], "val": dict(trainer["last_val"]), "train": dict(trainer["last_train"]),
            "saved_at": time.time(), "reason": reason, "torch_threads": torch.get_num_threads(),
            "versions": {"tui_trainer": __version__, "torch": str(torch.__version__),
                         "python": platform.python_version()},
        },
        "config": config,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "extra": extra,
        "trainer": {**trainer, "kind": SCRIPT_KIND},
        "rng": checkpoints.capture_rng(),
        "history_json": history_json,
    }


def read_script_checkpoint(path: str | Path, map_location: str) -> dict[str, Any]:
    """A checkpoint a script's run wrote, loaded and checked (never runs code); raises CheckpointError."""
    loaded = checkpoints.load_checkpoint(path, map_location=map_location)
    trainer = loaded["trainer"]
    if trainer.get("kind") != SCRIPT_KIND:
        raise CheckpointError(path, "a preset's run wrote it: continue it with `tui-trainer --resume`, or load its "
                                    "weights with tt.load_weights")
    for key in ("epoch", "position", "step"):
        if type(trainer.get(key)) is not int or trainer[key] < 0:
            raise CheckpointError(path, f"damaged: trainer.{key} should be a count")
    return loaded


def history(path: str | Path, loaded: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        records = json.loads(loaded.get("history_json") or "[]")
    except (ValueError, RecursionError):
        raise CheckpointError(path, "damaged: history_json is not JSON") from None
    if not isinstance(records, list) or not all(isinstance(record, dict) for record in records):
        raise CheckpointError(path, "damaged: history_json is not a list of records")
    return records


def restore(path: str | Path, loaded: dict[str, Any], model: torch.nn.Module,
            optimizer: torch.optim.Optimizer | None, scheduler: Any | None, scaler: Any | None,
            extra: dict[str, Any] | None) -> None:
    """Put a checked checkpoint's states into the script's objects; everything is checked to fit before any of
    it changes them. Raises CheckpointError."""
    problem = checkpoints.model_mismatch(model.state_dict(), loaded["model"])
    if problem is None and optimizer is not None:
        if not isinstance(loaded.get("optimizer"), dict):
            problem = "it holds no optimizer state"
        else:
            problem = checkpoints.optimizer_mismatch(optimizer, loaded["optimizer"])
    for what, own in (("scheduler", scheduler), ("scaler", scaler)):
        if problem is None and own is not None and loaded.get(what) is not None:
            problem = checkpoints.structure_mismatch(own.state_dict(), loaded[what], what)
    if problem:
        raise CheckpointError(path, f"does not fit this script's model or optimizer: {problem}")
    try:
        model.load_state_dict(loaded["model"])
        if optimizer is not None:
            optimizer.load_state_dict(loaded["optimizer"])
        for own, state in ((scheduler, loaded.get("scheduler")), (scaler, loaded.get("scaler"))):
            if own is not None and state is not None:
                own.load_state_dict(state)
        checkpoints.restore_rng(loaded["rng"])
    except (RuntimeError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(path, f"cannot be continued here: {checkpoints._first_line(error)}") from None
    if extra is not None and isinstance(loaded.get("extra"), dict):
        extra.clear()
        extra.update(loaded["extra"])


def find_last(root: Path, run_id: str) -> Path | None:
    """The newest last.pt of a run of this name under root (its folder, or a branch or later run of it)."""
    from tui_trainer.runs.folder import safe_run_id

    base = safe_run_id(run_id)
    found = [path for path in root.glob("*/last.pt") if path.parent.name == base or
             path.parent.name.startswith(base + "-")]
    infos = [checkpoints.read_info(path) for path in found]
    usable = [info for info in infos if info.error is None]
    return Path(max(usable, key=lambda info: info.saved_at).path) if usable else None


# ---------------------------------------------------------------- weights only


def _state_dict_in(loaded: Any) -> dict[str, torch.Tensor] | None:
    if isinstance(loaded, dict) and loaded and all(isinstance(value, torch.Tensor) for value in loaded.values()):
        return loaded
    if isinstance(loaded, dict):
        for key in ("model", "state_dict"):
            inner = loaded.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                return inner
    return None


def load_weights(model: torch.nn.Module, path: str | Path, *, strict: bool = True) -> None:
    """Load weights into model from a checkpoint (tui-trainer's, a script run's) or a plain
    `torch.save(model.state_dict(), path)` file (a dict holding one under "state_dict" or "model" too). The file
    is checked and loaded with weights_only, so it cannot run code. strict: every key must match (else only
    the matching ones load). Raises CheckpointError, one line naming the file."""
    path = Path(path).expanduser()
    file, opened = checkpoints._open_regular(path)
    with file:
        checkpoints._check_archive(path, file, opened.st_size)
        try:
            loaded = checkpoints._unpickle(path, file, opened, "cpu", mmap=False)
        except pickle.UnpicklingError:
            raise CheckpointError(path, "refused: the file holds more than weights") from None
    weights = _state_dict_in(loaded)
    if weights is None:
        raise CheckpointError(path, "holds no model weights (a dict of tensors, or one under 'model' or "
                                    "'state_dict')")
    problem = checkpoints.model_mismatch(model.state_dict(), weights)
    if problem and strict:
        raise CheckpointError(path, f"does not fit this model: {problem}")
    try:
        model.load_state_dict(weights, strict=strict)
    except (RuntimeError, ValueError) as error:
        raise CheckpointError(path, f"does not fit this model: {checkpoints._first_line(error)}") from None
