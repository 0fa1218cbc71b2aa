"""What a resume's overrides (--lr, --set key=value ...) change in the run it continues.

A resumed run loads the checkpoint's optimizer, scheduler and trackers, and their states hold the settings the
checkpoint was trained with. So each setting a resume gives otherwise than the checkpoint's own config takes
effect here, or is refused with one line: never written to the new config.yaml and then ignored.

- lr, weight_decay and momentum change as a live change does (a HyperparametersChanged at the resumed step);
- the optimizer's other settings (betas, nesterov, alpha) are in its state: refused;
- the seed: the checkpoint's random state goes on, and a new seed would split the data otherwise: refused;
- a onecycle schedule's length and peak are in its state: refused when the run's length or max_lr changes;
- plateau's factor, patience and mode, best.pt's and early stopping's monitor: taken from the new config (a
  new monitor starts its best value afresh).
"""

from __future__ import annotations

from typing import Any

from tui_trainer.catalog.optimizers import LIVE_TUNABLE
from tui_trainer.config import ConfigError, OptimizerConfig, RunConfig, SchedulerConfig

_DEFAULTS = {"optimizer": OptimizerConfig, "scheduler": SchedulerConfig}


def stored(saved: dict[str, Any], dotted: str, default: Any = None) -> Any:
    """A field of a checkpoint's stored config (a dict as saved, defaults left out), or default."""
    value: Any = saved
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return default
        value = value[part]
    return value


def _default(section: str, name: str) -> Any:
    return _DEFAULTS[section].model_fields[name].default


def optimizer_changes(saved: dict[str, Any], config: RunConfig) -> dict[str, float]:
    """The live-tunable hyperparameters config sets otherwise than the checkpoint's config; raises ConfigError
    for any other optimizer setting that differs (the same optimizer, by name, is the checkpoint's to load)."""
    changes: dict[str, float] = {}
    if stored(saved, "optimizer.name", _default("optimizer", "name")) != config.optimizer.name:
        return changes  # another optimizer: its state, if it fits at all, is checked where it is loaded
    for name, value in config.optimizer.model_dump().items():
        before = stored(saved, f"optimizer.{name}", _default("optimizer", name))
        if name == "name" or value is None or value == before:
            continue
        if name not in LIVE_TUNABLE:
            kept = "no value" if before is None else repr(before)
            raise ConfigError("", f"optimizer.{name}", f"cannot change when resuming a checkpoint (its optimizer "
                                                      f"state holds {kept}); start a new run to use {value!r}")
        changes[name] = float(value)
    return changes


def refuse_unchangeable(saved: dict[str, Any], config: RunConfig, saved_scheduler: Any,
                        total_steps: int) -> None:
    """Raise ConfigError for a setting that a resume cannot change (see the module's docstring)."""
    seed = stored(saved, "seed", 0)
    if seed != config.seed:
        raise ConfigError("", "seed", f"cannot change when resuming a checkpoint: its random state goes on from "
                                      f"seed {seed!r} (and a new seed would split the data otherwise); start a "
                                      f"new run to use seed {config.seed}")
    if config.scheduler.name != "onecycle" or not isinstance(saved_scheduler, dict):
        return
    if stored(saved, "scheduler.max_lr") != config.scheduler.max_lr:
        raise ConfigError("", "scheduler.max_lr", "cannot change when resuming a onecycle schedule: its peak is in "
                                                  "the checkpoint; change lr instead (it scales the schedule)")
    length = saved_scheduler.get("total_steps")
    if isinstance(length, int) and length != max(2, total_steps):
        raise ConfigError("", "epochs", f"a onecycle schedule keeps the length it was started with ({length} "
                                        f"steps); this resumed run would take {total_steps}: keep epochs and "
                                        "max_steps (and the number of processes) as they were, or start a new run")


def monitor_changed(saved: dict[str, Any], config: RunConfig, section: str) -> bool:
    """Whether best.pt's (section "checkpoint") or early stopping's monitor or mode differs from the checkpoint's."""
    if section == "checkpoint":
        return stored(saved, "checkpoint.monitor", "val_loss") != config.checkpoint.monitor
    rule = config.early_stopping
    before = stored(saved, "early_stopping")
    if rule is None or not isinstance(before, dict):
        return False
    return (before.get("monitor", "val_loss"), before.get("mode")) != (rule.monitor, rule.mode)
