"""The run configuration: a preset (YAML) validated into a frozen RunConfig before anything heavy happens.

Every error is a ConfigError whose text is one line: where it came from, the field's path, what was
given and what is allowed.
"""

from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from tui_trainer.catalog.datasets import DATASETS
from tui_trainer.catalog.losses import LOSSES, losses_for
from tui_trainer.catalog.models import MODELS
from tui_trainer.catalog.optimizers import OPTIMIZERS
from tui_trainer.catalog.options import CatalogError, Options, unknown_name
from tui_trainer.errors import UserError
from tui_trainer.text import printable
from tui_trainer.yaml_io import UnreadableFile, YamlRefused, dump_yaml, load_yaml, parse_scalar, read_regular_file

Task = Literal["classification", "regression"]
Metric = Literal["val_loss", "val_accuracy", "val_mae", "val_r2"]
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("val_loss", "val_accuracy"),
    "regression": ("val_loss", "val_mae", "val_r2"),
}
DEVICE_PATTERN = r"^(auto|cpu|mps|cuda|cuda:\d{1,3})$"
MAX_PRESET_BYTES = 1_000_000
MAX_THREADS = 4096
TABLE_SOURCES = ("csv", "parquet", "jsonl")


class ConfigError(UserError):
    """A preset or override that cannot be used. str() is one line naming source, field, given and allowed."""

    def __init__(self, source: str, path: str, message: str) -> None:
        self.source, self.path, self.message = source, path, message
        self.field = path
        where = ": ".join(part for part in (source, path) if part)
        super().__init__(_one_line(f"{where}: {message}" if where else message))


_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"  # what str.splitlines() breaks on


def _one_line(text: str) -> str:
    """Escape line breaks (a key or a file name may hold one), so the message stays one line."""
    return "".join(repr(char)[1:-1] if char in _LINE_BREAKS else char for char in text)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


IMPORT_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"


class DataConfig(Section):
    model_config = ConfigDict(populate_by_name=True)

    source: str | None = Field(
        None, description="Dataset name from the catalog, or a file format: csv, parquet, jsonl, arrays, "
                          "image_folder (see `tui-trainer presets --catalog`).")
    import_target: str | None = Field(
        None, alias="import", pattern=IMPORT_PATTERN,
        description='Data of your own, "package.module:factory", returning a Dataset, a (train, val) pair of '
                    "Datasets or DataLoaders, or tensors (x, y); options are its keyword arguments.")
    val_split: float | None = Field(
        None, gt=0, lt=1,
        description="Share of the data held out for validation; unset: 0.2, or the official test split of a "
                    "torchvision dataset.")
    batch_size: int = Field(64, ge=1, le=1_048_576, description="Samples per training step.")
    num_workers: int = Field(0, ge=0, le=256, description="DataLoader worker processes (datasets not held in memory); "
                                                          "they live for the whole run.")
    pin_memory: bool | None = Field(None, description="Pinned host memory for DataLoader batches; unset: on with CUDA.")
    prefetch_factor: int | None = Field(None, ge=1, le=64,
                                        description="Batches each worker loads ahead (needs num_workers); unset: 2.")
    shuffle: bool = Field(True, description="Shuffle the training data every epoch.")
    sampler: Literal["uniform", "weighted"] = Field(
        "uniform", description="uniform: every sample once an epoch; weighted: samples drawn with replacement, "
                               "each class as often as the others (classification).")
    options: dict[str, Any] = Field(default_factory=dict, description="The dataset's (or your factory's) options.")

    @model_validator(mode="after")
    def _source_or_import(self) -> DataConfig:
        if not self.source and not self.import_target:
            raise ValueError("give a source (a dataset name or a file format) or import: 'package.module:factory'")
        if self.source and self.import_target:
            raise ValueError("give either source or import, not both")
        return self

    @field_validator("prefetch_factor")
    @classmethod
    def _prefetch_needs_workers(cls, prefetch_factor: int | None, info: ValidationInfo) -> int | None:
        if prefetch_factor is not None and info.data.get("num_workers") == 0:
            raise ValueError(f"{prefetch_factor} needs num_workers of 1 or more; given num_workers 0")
        return prefetch_factor


class ModelConfig(Section):
    model_config = ConfigDict(populate_by_name=True)

    name: str | None = Field(None, description="Model name from the catalog: linear, mlp or cnn.")
    import_target: str | None = Field(
        None, alias="import", pattern=IMPORT_PATTERN,
        description='A factory of your own, "package.module:factory", returning a torch.nn.Module.')
    options: dict[str, Any] = Field(default_factory=dict, description="The model's options (factory kwargs).")

    @model_validator(mode="after")
    def _name_or_import(self) -> ModelConfig:
        if not self.name and not self.import_target:
            raise ValueError("give a model name (linear, mlp, cnn) or import: 'package.module:factory'")
        if self.name and self.import_target:
            raise ValueError("give either name or import, not both")
        return self


class LossConfig(Section):
    name: str = Field(description="Loss name from the catalog; it must fit the task.")
    options: dict[str, Any] = Field(default_factory=dict, description="The loss's options.")


class OptimizerConfig(Section):
    name: str = Field("adam", description="sgd, adam, adamw or rmsprop.")
    lr: float = Field(1e-3, gt=0, le=100, description="Learning rate.")
    weight_decay: float = Field(0.0, ge=0, le=10, description="L2 penalty (decoupled for adamw).")
    momentum: float | None = Field(None, ge=0, lt=1, description="Momentum (sgd, rmsprop).")
    nesterov: bool | None = Field(None, description="Nesterov momentum (sgd; needs momentum > 0).")
    betas: list[float] | None = Field(None, min_length=2, max_length=2, description="Adam's two betas, each in [0, 1).")
    alpha: float | None = Field(None, gt=0, lt=1, description="Smoothing constant (rmsprop).")

    @model_validator(mode="after")
    def _ranges(self) -> OptimizerConfig:
        if self.betas is not None and not all(0 <= beta < 1 for beta in self.betas):
            raise ValueError(f"betas must each be in [0, 1); given {self.betas}")
        if self.nesterov and not self.momentum:
            raise ValueError("nesterov needs momentum > 0")
        return self


class SchedulerConfig(Section):
    name: Literal["none", "step", "cosine", "onecycle", "plateau"] = Field(
        "none", description="Learning-rate schedule.")
    warmup_steps: int = Field(0, ge=0, le=100_000_000, description="Linear warm-up from 0 over this many steps.")
    step_size: int = Field(10, ge=1, le=1_000_000, description="step: epochs between decays.")
    gamma: float = Field(0.1, gt=0, le=1, description="step: decay factor.")
    min_lr: float = Field(0.0, ge=0, le=100, description="cosine: the learning rate at the end.")
    max_lr: float | None = Field(None, gt=0, le=100,
                                 description="onecycle: peak learning rate (default: optimizer.lr).")
    factor: float = Field(0.1, gt=0, lt=1, description="plateau: decay factor.")
    patience: int = Field(3, ge=0, le=1_000_000, description="plateau: epochs without improvement before decaying.")

    TAKES: ClassVar[dict[str, tuple[str, ...]]] = {
        "none": ("warmup_steps",),
        "step": ("step_size", "gamma", "warmup_steps"),
        "cosine": ("min_lr", "warmup_steps"),
        "onecycle": ("max_lr",),
        "plateau": ("factor", "patience"),
    }

    @model_validator(mode="after")
    def _only_what_it_takes(self) -> SchedulerConfig:
        for field in sorted(self.model_fields_set - {"name"}):
            allowed = self.TAKES[self.name]
            # A saved config lists every field with its default; only a changed value is a mistake.
            if field not in allowed and getattr(self, field) != type(self).model_fields[field].default:
                raise CatalogError(f"scheduler.{field}",
                                   f"scheduler {self.name!r} does not take {field}; it takes: "
                                   f"{', '.join(allowed) or 'nothing'}")
        return self


class EarlyStoppingConfig(Section):
    monitor: Metric = Field("val_loss", description="Validation metric to watch.")
    patience: int = Field(5, ge=1, le=1_000_000, description="Epochs without improvement before stopping.")
    mode: Literal["min", "max"] | None = Field(None, description="min or max; default from the metric.")
    min_delta: float = Field(0.0, ge=0, description="Smallest change that counts as improvement.")


class CheckpointConfig(Section):
    dir: str = Field("checkpoints", description="Folder for run folders (checkpoints/<run-id>/).")
    every_epochs: int = Field(1, ge=0, le=1_000_000, description="Save epoch-N.pt every N epochs (0: never).")
    keep_last: int = Field(3, ge=1, le=10_000, description="Periodic checkpoints kept per run.")
    save_best: bool = Field(True, description="Keep best.pt: the best value of `monitor`.")
    monitor: Metric = Field("val_loss", description="Metric that decides best.pt.")


class LoggingConfig(Section):
    every_steps: int = Field(50, ge=1, le=1_000_000, description="Progress event at most every N steps...")
    every_ms: int = Field(500, ge=10, le=3_600_000, description="...or every T milliseconds, whichever first.")


def metric_mode(metric: str) -> Literal["min", "max"]:
    return "max" if metric in ("val_accuracy", "val_r2") else "min"


class RunConfig(Section):
    """Everything a run needs. Built by `load_preset` / `config_from_dict`, never half-valid."""

    name: str = Field("custom", min_length=1, max_length=200, description="The preset's name.")
    description: str = Field("", max_length=2000, description="One line on what it trains.")
    task: Task = Field(description="classification or regression.")
    data: DataConfig
    model: ModelConfig
    loss: LossConfig
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    epochs: int = Field(10, ge=1, le=1_000_000, description="Passes over the training data.")
    max_steps: int | None = Field(None, ge=1, le=10**12, description="Stop after this many steps in all.")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed for data splits, initialisation and shuffling.")
    early_stopping: EarlyStoppingConfig | None = Field(None, description="Stop when a metric stops improving.")
    device: str = Field("auto", pattern=DEVICE_PATTERN, description="auto, cpu, cuda, cuda:N or mps.")
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="Autocast precision.")
    grad_clip: float | None = Field(None, gt=0, description="Clip the gradients' global norm to this.")
    compile: bool = Field(False, description="torch.compile the model (falls back cleanly when it fails).")
    channels_last: bool | None = Field(
        None, description="Convolution weights in channels-last memory order (faster convolutions on CPUs and "
                          "GPUs); unset: on for the catalog's cnn, off for a model of your own.")
    threads: int | None = Field(
        None, description="torch's threads for this run: a number (1 or more), or auto (unset): the CPUs this "
                          "process may use, less those other work keeps busy (see the README's Threads).")
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    @field_validator("threads", mode="before")
    @classmethod
    def _thread_count(cls, value: Any) -> int | None:
        if value is None or value == "auto":
            return None
        if type(value) is not int or not 1 <= value <= MAX_THREADS:
            raise ValueError(f"given {_short(value)}; allowed: a number of threads from 1 to {MAX_THREADS}, or auto")
        return value

    @model_validator(mode="after")
    def _fits_catalog(self) -> RunConfig:
        check_catalog(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# ---------------------------------------------------------------- code a config would run


def import_targets(config: RunConfig) -> list[tuple[str, str]]:
    """Every `import:` field set in config, as (field path, "package.module:factory"): the code a run of it
    would import and call. Found by the schema (any section's `import` field), so a new one cannot be missed."""
    found: list[tuple[str, str]] = []

    def walk(section: BaseModel, prefix: str) -> None:
        for name, info in type(section).model_fields.items():
            key, value = info.alias or name, getattr(section, name)
            if key == "import" and isinstance(value, str):
                found.append((prefix + key, value))
            elif isinstance(value, BaseModel):
                walk(value, f"{prefix}{key}.")

    walk(config, "")
    return found


def stored_imports(raw: Any) -> list[tuple[str, str]]:
    """The `import:` fields of a config as stored in a file, valid or not (for listings): every section's."""
    if not isinstance(raw, dict):
        return []
    return [(f"{key}.import", section["import"]) for key, section in raw.items()
            if isinstance(section, dict) and isinstance(section.get("import"), str)]


class UntrustedCode(ConfigError):
    """A config read back from a file (a checkpoint, a run folder's config.yaml) names code to import, and the
    user has not said that this file may run code. `targets` are the (field, target) pairs to show them."""

    def __init__(self, source: str, targets: list[tuple[str, str]]) -> None:
        self.targets = targets
        listed = ", ".join(f"{path} {target!r}" for path, target in targets)
        super().__init__(source, "", f"refused: its stored config would import and run code ({listed}); code from "
                                     "a file runs only if you trust that file: add --trust-code, or load it from "
                                     "the app's load panel, which asks")


def require_trusted(config: RunConfig, source: str, trusted: bool = False,
                    allowed: tuple[str, ...] | list[str] = (), user_fields: set[str] | frozenset[str] = frozenset(),
                    ) -> None:
    """Raise UntrustedCode unless every import target in a config read from a file is allowed: the user trusts
    the whole file (`trusted`, --trust-code), confirmed that exact target (`allowed`), or set that field
    themselves (`user_fields`: dotted keys from --set and the like)."""
    if trusted:
        return
    refused = [(path, target) for path, target in import_targets(config)
               if target not in allowed and path not in user_fields]
    if refused:
        raise UntrustedCode(source, refused)


# ---------------------------------------------------------------- catalog checks


def _check_options(path: str, options_model: type[Options], options: dict[str, Any], owner: str) -> None:
    try:
        options_model.model_validate(options)
    except ValidationError as error:
        problem = _from_validation(error, options_model, f"{path}.", owner=owner)
        raise CatalogError(problem.path, problem.message) from None


def check_catalog(config: RunConfig) -> None:
    """Check names and combinations against the catalog; raises CatalogError with the field's path."""
    data = config.data
    dataset = None
    if data.source is not None:
        if data.source not in DATASETS:
            raise CatalogError("data.source", unknown_name("dataset", data.source, DATASETS,
                                                           " (or import: 'package.module:factory')"))
        dataset = DATASETS[data.source]
        if dataset.task is not None and dataset.task != config.task:
            raise CatalogError("task", f"{config.task!r} does not fit dataset {data.source!r}, which is "
                                       f"{dataset.task}")
        _check_options("data.options", dataset.options, data.options, f"dataset {data.source!r}")
    if data.sampler == "weighted" and config.task != "classification":
        raise CatalogError("data.sampler", f"weighted draws by class frequency: it needs a classification task; "
                                           f"given {config.task}")

    model = config.model
    if model.name is not None:
        if model.name not in MODELS:
            raise CatalogError("model.name", unknown_name("model", model.name, MODELS,
                                                          " (or import: 'package.module:factory')"))
        spec = MODELS[model.name]
        if spec.needs_image and dataset is not None and dataset.image is False:
            raise CatalogError("model.name", f"{model.name!r} needs image data; dataset {data.source!r} is tabular "
                                             f"(use linear or mlp)")
        if data.options.get("encoding") == "index" and dataset is not None and data.source in TABLE_SOURCES:
            raise CatalogError("model.name", f"{model.name!r} takes one tensor; data.options.encoding 'index' gives "
                                             "dicts of numeric and categorical tensors: use encoding: onehot, or a "
                                             "model of your own (model.import)")
        _check_options("model.options", spec.options, model.options, f"model {model.name!r}")

    loss = config.loss
    if loss.name not in LOSSES:
        raise CatalogError("loss.name", unknown_name("loss", loss.name, LOSSES))
    if LOSSES[loss.name].task != config.task:
        raise CatalogError("loss.name", f"{loss.name!r} does not fit a {config.task} task; allowed: "
                                        f"{', '.join(losses_for(config.task))}")
    _check_options("loss.options", LOSSES[loss.name].options, loss.options, f"loss {loss.name!r}")

    optimizer = config.optimizer
    if optimizer.name not in OPTIMIZERS:
        raise CatalogError("optimizer.name", unknown_name("optimizer", optimizer.name, OPTIMIZERS))
    takes = OPTIMIZERS[optimizer.name].hyperparameters
    for field in sorted(optimizer.model_fields_set - {"name"} - set(takes)):
        if getattr(optimizer, field) is not None:
            raise CatalogError(f"optimizer.{field}",
                               f"{optimizer.name} does not take {field}; it takes: {', '.join(takes)}")

    allowed_metrics = TASK_METRICS[config.task]
    for path, metric in (("checkpoint.monitor", config.checkpoint.monitor),
                         ("early_stopping.monitor", config.early_stopping and config.early_stopping.monitor)):
        if metric and metric not in allowed_metrics:
            raise CatalogError(path, f"{metric!r} is not measured for {config.task}; allowed: "
                                     f"{', '.join(allowed_metrics)}")
    if config.precision == "fp16" and config.device in ("cpu", "mps"):
        raise CatalogError("precision", f"fp16 needs a CUDA device; given device {config.device!r}; "
                                        "use bf16 or fp32")


# ---------------------------------------------------------------- errors


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class that owns the field at loc[:-1], to suggest a key near an unknown one."""
    current: Any = root
    for part in loc[:-1]:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return None
        annotation = fields[part].annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        current = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if current is None:
            return None
    return current


def _field_names(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _from_validation(error: ValidationError, root: type[BaseModel], prefix: str = "",
                     source: str = "", owner: str = "") -> ConfigError:
    first = error.errors()[0]
    loc = tuple(first["loc"])
    path = prefix + ".".join(str(part) for part in loc)
    path = path.rstrip(".")
    kind = first["type"]
    given = first.get("input")
    if kind == "extra_forbidden":
        parent = _model_at(root, loc)
        allowed = _field_names(parent) if parent else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f" did you mean {close[0]!r}?" if close else ""
        whose = f" for {owner}" if owner and len(loc) == 1 else ""
        message = f"unknown key{whose};{hint} allowed: {', '.join(allowed) or 'none'}"
    elif kind == "missing":
        message = "required, but missing"
    elif kind == "literal_error":
        message = f"given {_short(given)}; allowed: {first['ctx']['expected']}"
    elif kind == "string_pattern_mismatch":
        field = _model_at(root, loc)
        by_key = {info.alias or name: info for name, info in field.model_fields.items()} if field else {}
        description = by_key[loc[-1]].description if loc[-1] in by_key else ""
        message = f"given {_short(given)}; allowed: {description or first['ctx']['pattern']}"
    elif kind == "value_error":
        message = str(first["ctx"]["error"])
    else:
        message = f"{first['msg'].lower()}; given {_short(given)}"
    more = len(error.errors()) - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ConfigError(source, path, message)


# ---------------------------------------------------------------- loading


def config_from_dict(raw: Any, source: str = "") -> RunConfig:
    """Validate a plain dict (a parsed preset) into a RunConfig, or raise one ConfigError."""
    if not isinstance(raw, dict):
        raise ConfigError(source, "", f"a preset is a mapping of keys to values; given {type(raw).__name__}")
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as error:
        raise _from_validation(error, RunConfig, source=source) from None
    except CatalogError as error:
        raise ConfigError(source, error.path, error.message) from None
    except RecursionError:
        raise ConfigError(source, "", "nested too deeply") from None


def read_preset_dict(path: Path) -> dict[str, Any]:
    """Read a preset file into a plain dict (not yet validated). name defaults to the file's stem.

    Only a regular file of at most MAX_PRESET_BYTES is read; YAML aliases are bounded, duplicate keys refused."""
    source = printable(path)
    try:
        text = read_regular_file(path, MAX_PRESET_BYTES).decode("utf-8")
    except UnreadableFile as error:
        raise ConfigError(source, "", str(error)) from None
    except UnicodeDecodeError:
        raise ConfigError(source, "", "is not UTF-8 text") from None
    try:
        raw = load_yaml(text)
    except YamlRefused as error:
        raise ConfigError(source, "", str(error.problem)) from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        # The context says what was being read ("found duplicate anchor 'a'; first occurrence"), if anything.
        problem = f"{error.context}, {error.problem}" if error.context else error.problem
        raise ConfigError(source, "", f"YAML syntax error at {where}{problem}") from None
    except yaml.YAMLError as error:
        raise ConfigError(source, "", f"YAML error: {str(error).splitlines()[0]}") from None
    except RecursionError:
        raise ConfigError(source, "", "nested too deeply") from None
    if raw is None:
        raise ConfigError(source, "", "is empty; a preset needs at least task, data, model and loss")
    if isinstance(raw, dict):
        raw.setdefault("name", path.stem)
    return raw


def load_preset(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    path = Path(path)
    raw = read_preset_dict(path)
    if overrides:
        raw = apply_overrides(raw, overrides, source=str(path))
    return config_from_dict(raw, source=str(path))


# ---------------------------------------------------------------- overrides

KEY_PATTERN = re.compile(r"^[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*$")
# Changing one of these names drops the options of the old choice that the new one does not take.
_SECTION_OPTIONS = {
    "model.name": ("model", "options"),
    "loss.name": ("loss", "options"),
    "data.source": ("data", "options"),
    "data.import": ("data", "options"),
}
# Choosing data by one of these drops the other (a source and an import are exclusive).
_DATA_CHOICE = {"data.source": "import", "data.import": "source"}


def parse_assignment(text: str) -> tuple[str, Any]:
    """`optimizer.lr=0.01` -> ("optimizer.lr", 0.01)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not KEY_PATTERN.match(key):
        raise ConfigError("--set", "", f"expected dotted.key=value; given {_short(text)}")
    return key, parse_scalar(value)


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any], source: str = "") -> dict[str, Any]:
    """Return a copy of raw with dotted keys set. Switching a model, loss, dataset or optimizer by name
    drops the old choice's options, which the new one would reject."""
    if not isinstance(raw, dict):
        raise ConfigError(source, "", f"a preset is a mapping of keys to values; given {type(raw).__name__}")
    result = copy.deepcopy(raw)
    for key, value in overrides.items():
        parts = key.split(".")
        node = result
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(source, ".".join(parts[: depth + 1]), f"is {_short(child)}, not a section")
            node = child
        leaf = parts[-1]
        if node.get(leaf) != value:
            if key in _SECTION_OPTIONS:
                node.pop("options", None)
            if key == "model.name":
                node.pop("import", None)
            if key in _DATA_CHOICE:
                node.pop(_DATA_CHOICE[key], None)
            if key == "optimizer.name" and isinstance(value, str) and value in OPTIMIZERS:
                takes = OPTIMIZERS[value].hyperparameters
                for field in [f for f in node if f not in takes and f != "name"]:
                    del node[field]
        node[leaf] = value
    return result


def dump_config(config: RunConfig) -> str:
    return dump_yaml(config.to_dict())
