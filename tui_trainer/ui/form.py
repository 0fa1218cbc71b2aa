"""The setup form's logic, without widgets: what each field offers, and the form's values checked
into a RunConfig the same way a preset with overrides is (one-line ConfigError texts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tui_trainer.catalog.datasets import DATASETS
from tui_trainer.catalog.losses import losses_for
from tui_trainer.catalog.models import MODELS
from tui_trainer.catalog.optimizers import OPTIMIZERS
from tui_trainer.config import ConfigError, RunConfig, apply_overrides, config_from_dict
from tui_trainer.yaml_io import parse_scalar

FIELDS: dict[str, str] = {
    "model": "model.name",
    "loss": "loss.name",
    "optimizer": "optimizer.name",
    "lr": "optimizer.lr",
    "epochs": "epochs",
    "batch_size": "data.batch_size",
    "device": "device",
    "precision": "precision",
    "checkpoint_dir": "checkpoint.dir",
}
"""Form field id -> the config key it edits."""
TEXT_FIELDS = ("lr", "epochs", "batch_size", "checkpoint_dir")
PRECISIONS = ("fp32", "bf16", "fp16")
CUSTOM_MODEL = "(import)"
"""The model choice of a preset whose model is its own factory (`import: package.module:factory`)."""
GENERAL = ""
"""The errors key for a problem no single field owns."""
MAX_PROCESSES = 1024
"""As the command line's --processes allows."""


def field_for(path: str) -> str:
    """The form field that owns a config path ("optimizer.lr" -> "lr"); GENERAL when none does."""
    for name, key in FIELDS.items():
        if path == key or path.startswith(key + "."):
            return name
    if path.startswith("model."):  # model.import, model.options: the model choice shows them
        return "model"
    return GENERAL


def choices(config: RunConfig) -> dict[str, list[str]]:
    """What the Select fields offer for a preset: only what fits its task and data."""
    image = DATASETS[config.data.source].image if config.data.source in DATASETS else False
    models = [name for name, spec in MODELS.items() if image or not spec.needs_image]
    if config.model.import_target:
        models.insert(0, CUSTOM_MODEL)
    return {
        "model": models,
        "loss": losses_for(config.task),
        "optimizer": list(OPTIMIZERS),
        "precision": list(PRECISIONS),
    }


def values_from(config: RunConfig) -> dict[str, str]:
    """The form's values for a validated config."""
    return {
        "model": config.model.name or CUSTOM_MODEL,
        "loss": config.loss.name,
        "optimizer": config.optimizer.name,
        "lr": f"{config.optimizer.lr:g}",
        "epochs": str(config.epochs),
        "batch_size": str(config.data.batch_size),
        "device": config.device,
        "precision": config.precision,
        "checkpoint_dir": config.checkpoint.dir,
    }


def overrides_from(values: dict[str, str]) -> dict[str, Any]:
    """Dotted-key overrides for the form's values; text is read as a preset would read it."""
    overrides: dict[str, Any] = {}
    for name, key in FIELDS.items():
        if name not in values or (name == "model" and values[name] == CUSTOM_MODEL):
            continue
        value: Any = values[name]
        if name in ("lr", "epochs", "batch_size"):
            value = parse_scalar(value.strip())
        overrides[key] = value
    return overrides


@dataclass
class FormCheck:
    config: RunConfig | None = None
    errors: dict[str, str] = field(default_factory=dict)
    """Field id (or GENERAL) -> one-line message."""

    @property
    def ok(self) -> bool:
        return self.config is not None and not self.errors


def _try(raw: dict[str, Any], overrides: dict[str, Any]) -> tuple[RunConfig | None, ConfigError | None]:
    try:
        return config_from_dict(apply_overrides(raw, overrides)), None
    except ConfigError as error:
        return None, error


def check(base: dict[str, Any], values: dict[str, str], train_size: int | None = None) -> FormCheck:
    """Validate the form against the preset's raw dict. Each field is checked on its own first, so
    every wrong field is flagged at once, then the whole form (for combinations)."""
    overrides = overrides_from(values)
    result = FormCheck()
    for name, key in FIELDS.items():
        if key not in overrides or name in ("model", "loss", "optimizer"):
            continue
        _, error = _try(base, {key: overrides[key]})
        if error is not None and field_for(error.path) == name:
            result.errors[name] = str(error)
    config, error = _try(base, overrides)
    if error is not None:
        owner = field_for(error.path)
        result.errors.setdefault(owner, str(error))
    if config is not None and train_size is not None and config.data.batch_size > train_size:
        result.errors["batch_size"] = (f"data.batch_size: {config.data.batch_size} is larger than the "
                                       f"training set ({train_size} samples)")
    result.config = config if not result.errors else None
    return result


def check_processes(text: str) -> tuple[int | None, str]:
    """The Processes field: how many data-parallel processes (torchrun) the run uses, or why not."""
    allowed = f"allowed: a whole number from 1 to {MAX_PROCESSES}"
    try:
        value = int(text.strip())
    except ValueError:
        return None, f"processes: not a whole number; given {text.strip()!r}; {allowed}"
    if not 1 <= value <= MAX_PROCESSES:
        return None, f"processes: given {value}; {allowed}"
    return value, ""


def sizing_key(config: RunConfig) -> tuple[str, str, float | None, int, str] | None:
    """What the training set's size depends on, for data that is at hand without a download; None for
    data that may need one, and for the user's own data code (the run checks the batch size against those
    when it starts)."""
    spec = DATASETS.get(config.data.source or "")
    if spec is None or "download" in spec.options.model_fields:
        return None
    import json

    return (config.data.source or "", json.dumps(config.data.options, sort_keys=True), config.data.val_split,
            config.seed, config.task)


def train_size(key: tuple[str, str, float | None, int, str]) -> int:
    """Build the data once to count the training samples (imports torch; call it off the UI thread)."""
    import json

    from tui_trainer.catalog.datasets import build_dataset

    source, options, val_split, seed, task = key
    return build_dataset(source, json.loads(options), val_split, seed, task).train_size
