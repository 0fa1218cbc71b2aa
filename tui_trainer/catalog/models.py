"""Models by name: linear, mlp, cnn, and a user's own factory given as `import: "package.module:factory"`."""

from __future__ import annotations

import importlib
import inspect
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, field_validator

from tui_trainer.catalog.options import NoOptions, Options
from tui_trainer.errors import UserError
from tui_trainer.logs import get_logger

if TYPE_CHECKING:
    from torch import nn

log = get_logger("models")


MAX_WIDTH = 1_000_000
"""Widest hidden layer of the catalog's mlp."""
MAX_CHANNELS = 65_536
"""Most channels of one conv block of the catalog's cnn."""
MAX_PARAMETERS = 1_000_000_000
"""Most parameters a catalog model may have (4 GB of fp32 weights, three times that with Adam's state)."""


def _too_many(count: int) -> str:
    return f"would have {count:,} parameters; allowed: at most {MAX_PARAMETERS:,}"


class MLPOptions(Options):
    hidden: list[Annotated[int, Field(ge=1, le=MAX_WIDTH)]] = Field(
        [128, 64], max_length=64, description="Width of each hidden layer.")
    activation: Literal["relu", "gelu", "tanh", "sigmoid"] = Field("relu", description="Activation function.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout after each hidden layer.")
    batchnorm: bool = Field(False, description="BatchNorm1d after each hidden layer.")

    @field_validator("hidden")
    @classmethod
    def _parameters_between_hidden_layers(cls, hidden: list[int]) -> list[int]:
        # What the layers cost before the input and output are known; build_model checks the whole model.
        count = sum(width * following for width, following in itertools.pairwise(hidden))
        if count > MAX_PARAMETERS:
            raise ValueError(f"the layers between these widths alone {_too_many(count)}")
        return hidden


class CNNOptions(Options):
    channels: list[Annotated[int, Field(ge=1, le=MAX_CHANNELS)]] = Field(
        [32, 64], min_length=1, max_length=16, description="Output channels of each conv block.")
    kernel_size: int = Field(3, ge=1, le=15, description="Convolution kernel size (odd sizes keep the shape).")
    batchnorm: bool = Field(True, description="BatchNorm2d in each conv block.")
    dropout: float = Field(0.25, ge=0, lt=1, description="Dropout before the classifier.")
    hidden: int = Field(128, ge=1, le=65536, description="Width of the dense layer before the output.")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    options: type[Options]
    build: Callable[[Any, tuple[int, ...], int], nn.Module]
    needs_image: bool = False
    size_options: str = ""
    """The options that decide its size, named when it would be too big."""


def _activation(name: str) -> nn.Module:
    from torch import nn

    return {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[name]()


def _features(input_shape: tuple[int, ...]) -> int:
    size = 1
    for dim in input_shape:
        size *= dim
    return size


def _linear(options: NoOptions, input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
    from torch import nn

    return nn.Sequential(nn.Flatten(), nn.Linear(_features(input_shape), num_outputs))


def _mlp(options: MLPOptions, input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
    from torch import nn

    layers: list[nn.Module] = [nn.Flatten()]
    width = _features(input_shape)
    for hidden in options.hidden:
        layers.append(nn.Linear(width, hidden))
        if options.batchnorm:
            layers.append(nn.BatchNorm1d(hidden))
        layers.append(_activation(options.activation))
        if options.dropout:
            layers.append(nn.Dropout(options.dropout))
        width = hidden
    layers.append(nn.Linear(width, num_outputs))
    return nn.Sequential(*layers)


def _cnn(options: CNNOptions, input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
    from torch import nn

    channels, height, width = input_shape
    layers: list[nn.Module] = []
    for out_channels in options.channels:
        layers.append(nn.Conv2d(channels, out_channels, options.kernel_size, padding=options.kernel_size // 2))
        if options.batchnorm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU())
        # Pool while the image is big enough, so the blocks fit 8x8 digits and 32x32 photos alike.
        if min(height, width) >= 4:
            layers.append(nn.MaxPool2d(2))
            height, width = height // 2, width // 2
        channels = out_channels
    layers += [
        nn.Flatten(),
        nn.Dropout(options.dropout),
        nn.Linear(channels * height * width, options.hidden),
        nn.ReLU(),
        nn.Linear(options.hidden, num_outputs),
    ]
    return nn.Sequential(*layers)


class ImportedModelError(UserError):
    """A user's `import:` model could not be imported or built."""

    field = "model.import"


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300]}" if text else type(error).__name__


def build_imported(target: str, options: dict[str, Any], input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
    """Call the factory at "package.module:factory" with the preset's options.

    The factory also gets `input_shape` and `num_outputs` when its signature names them.
    """
    from torch import nn

    module_name, _, attribute = target.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ImportedModelError(f"model.import: cannot import {target!r}: {error}") from None
    except Exception as error:  # the module's own code failed (a SyntaxError, an exception at import)
        log.exception("importing %s", target)
        raise ImportedModelError(f"model.import: importing {target!r} failed: {_one_line(error)}") from None
    if not callable(factory):
        raise ImportedModelError(f"model.import: {target} is {type(factory).__name__}, not a function or class")
    kwargs = dict(options)
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin without a signature: it gets the options alone
        parameters = {}
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    for name, value in (("input_shape", input_shape), ("num_outputs", num_outputs)):
        if name in parameters or accepts_any:
            kwargs.setdefault(name, value)
    try:
        model = factory(**kwargs)
    except TypeError as error:
        raise ImportedModelError(f"model.options: {target} rejected its options: {_one_line(error)}") from None
    except Exception as error:  # the factory's own code failed; its traceback goes to the log
        log.exception("building %s", target)
        raise ImportedModelError(f"model.import: {target} raised {_one_line(error)}") from None
    if not isinstance(model, nn.Module):
        raise ImportedModelError(f"model.import: {target} returned {type(model).__name__}, not a torch.nn.Module")
    return model


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec("linear", "one linear layer on the flattened input", NoOptions, _linear),
        ModelSpec("mlp", "fully connected layers (hidden, activation, dropout, batchnorm)", MLPOptions, _mlp,
                  size_options="hidden"),
        ModelSpec("cnn", "conv blocks with batchnorm and pooling, then a dense head (image data)", CNNOptions, _cnn,
                  needs_image=True, size_options="channels, hidden"),
    ]
}


def build_model(name: str | None, import_target: str | None, options: dict[str, Any],
                input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
    """Build a catalog model (or a user's, by import). A catalog model over MAX_PARAMETERS is refused with a
    ConfigError before its weights are allocated."""
    if import_target:
        return build_imported(import_target, options, input_shape, num_outputs)
    spec = MODELS[name or ""]
    if spec.needs_image and len(input_shape) != 3:
        from tui_trainer.config import ConfigError

        raise ConfigError("", "model.name", f"{spec.name!r} needs images [channels, height, width]; the data's "
                                            f"samples are {list(input_shape)} (use linear or mlp)")
    validated = spec.options.model_validate(options)
    count = parameter_count(spec, validated, input_shape, num_outputs)
    if count > MAX_PARAMETERS:
        from tui_trainer.config import ConfigError

        field = "model.options" + (f".{spec.size_options}" if "," not in spec.size_options else "")
        raise ConfigError("", field, f"the {spec.name} for input {tuple(input_shape)} and {num_outputs} outputs "
                                     f"{_too_many(count)} (make {spec.size_options or 'it'} smaller)")
    return spec.build(validated, input_shape, num_outputs)


def parameter_count(spec: ModelSpec, options: Options, input_shape: tuple[int, ...], num_outputs: int) -> int:
    """Parameters of the model spec would build, counted on the meta device: nothing is allocated."""
    import torch

    with torch.device("meta"):
        model = spec.build(options, input_shape, num_outputs)
    return sum(parameter.numel() for parameter in model.parameters())
