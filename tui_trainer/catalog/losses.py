"""Loss functions by name, each with the task it fits and the options it takes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from tui_trainer.catalog.options import NoOptions, Options

if TYPE_CHECKING:
    import torch

Task = Literal["classification", "regression"]
LossFunction = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]


class CrossEntropyOptions(Options):
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Share of the target mass spread over all classes.")


class SmoothL1Options(Options):
    beta: float = Field(1.0, gt=0, le=1e6, description="Where the loss turns from quadratic to linear.")


class HuberOptions(Options):
    delta: float = Field(1.0, gt=0, le=1e6, description="Where the loss turns from quadratic to linear.")


@dataclass(frozen=True)
class LossSpec:
    name: str
    task: Task
    description: str
    options: type[Options]
    build: Callable[[Any, int], LossFunction]


def _cross_entropy(options: CrossEntropyOptions, num_outputs: int) -> LossFunction:
    from torch import nn

    return nn.CrossEntropyLoss(label_smoothing=options.label_smoothing)


def _nll(options: NoOptions, num_outputs: int) -> LossFunction:
    import torch.nn.functional as F

    # The models end in logits; NLL wants log-probabilities.
    return lambda logits, target: F.nll_loss(F.log_softmax(logits, dim=1), target)


def _bce_with_logits(options: NoOptions, num_outputs: int) -> LossFunction:
    import torch.nn.functional as F

    # One output per class, each a yes/no against the one-hot target.
    return lambda logits, target: F.binary_cross_entropy_with_logits(
        logits, F.one_hot(target, num_outputs).to(logits.dtype)
    )


def _module(class_name: str, **fixed: Any):
    def build(options: Options, num_outputs: int) -> LossFunction:
        from torch import nn

        return getattr(nn, class_name)(**fixed, **options.model_dump())

    return build


LOSSES: dict[str, LossSpec] = {
    spec.name: spec
    for spec in [
        LossSpec("cross_entropy", "classification", "softmax cross-entropy on logits", CrossEntropyOptions,
                 _cross_entropy),
        LossSpec("nll", "classification", "negative log-likelihood of log-softmax outputs", NoOptions, _nll),
        LossSpec("bce_with_logits", "classification", "binary cross-entropy per class (one-hot targets)",
                 NoOptions, _bce_with_logits),
        LossSpec("mse", "regression", "mean squared error", NoOptions, _module("MSELoss")),
        LossSpec("l1", "regression", "mean absolute error", NoOptions, _module("L1Loss")),
        LossSpec("smooth_l1", "regression", "smooth L1 (quadratic near zero)", SmoothL1Options,
                 _module("SmoothL1Loss")),
        LossSpec("huber", "regression", "Huber loss", HuberOptions, _module("HuberLoss")),
    ]
}


def losses_for(task: str) -> list[str]:
    return [name for name, spec in LOSSES.items() if spec.task == task]


def build_loss(name: str, options: dict[str, Any], num_outputs: int) -> LossFunction:
    spec = LOSSES[name]
    return spec.build(spec.options.model_validate(options), num_outputs)
