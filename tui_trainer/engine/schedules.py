"""Learning-rate schedules from the config, and live learning-rate changes that respect them.

Schedules that are a function of the step (warm-up, step decay, cosine) are one LambdaLR, so resume is
exact and a live change of the base learning rate keeps the schedule's shape. onecycle and plateau
use torch's own classes.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from tui_trainer.config import metric_mode

if TYPE_CHECKING:
    import torch

    from tui_trainer.config import RunConfig


def build_scheduler(config: RunConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int,
                    total_steps: int) -> Any | None:
    from torch.optim import lr_scheduler

    schedule = config.scheduler
    base_lr = config.optimizer.lr
    if schedule.name == "onecycle":
        return lr_scheduler.OneCycleLR(optimizer, max_lr=schedule.max_lr or base_lr, total_steps=max(2, total_steps))
    if schedule.name == "plateau":
        return lr_scheduler.ReduceLROnPlateau(optimizer, mode=metric_mode(config.checkpoint.monitor),
                                              factor=schedule.factor, patience=schedule.patience)
    if schedule.name == "none" and schedule.warmup_steps == 0:
        return None

    warmup = schedule.warmup_steps
    floor = min(1.0, schedule.min_lr / base_lr)

    def factor(step: int) -> float:
        value = 1.0
        if schedule.name == "step":
            value = schedule.gamma ** ((step // max(1, steps_per_epoch)) // schedule.step_size)
        elif schedule.name == "cosine":
            progress = min(1.0, max(0.0, (step - warmup) / max(1, total_steps - warmup)))
            value = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
        if step < warmup:
            value *= (step + 1) / warmup
        return value

    return lr_scheduler.LambdaLR(optimizer, factor)


def follow_config(scheduler: Any | None, config: RunConfig) -> None:
    """After a resume loaded a scheduler's state: the settings of config that the state also holds (the
    checkpoint's) are config's again, so that a resume's override takes effect. A plateau schedule whose
    mode changed (another monitor) starts its best value and its count of bad epochs afresh."""
    from torch.optim import lr_scheduler

    if not isinstance(scheduler, lr_scheduler.ReduceLROnPlateau):
        return
    scheduler.factor, scheduler.patience = config.scheduler.factor, config.scheduler.patience
    mode = metric_mode(config.checkpoint.monitor)
    if scheduler.mode != mode:
        scheduler._init_is_better(mode=mode, threshold=scheduler.threshold, threshold_mode=scheduler.threshold_mode)
        scheduler._reset()


def steps_per_step(scheduler: Any | None) -> bool:
    """Whether the scheduler advances every optimizer step (else once per epoch, on a metric)."""
    from torch.optim import lr_scheduler

    return scheduler is not None and not isinstance(scheduler, lr_scheduler.ReduceLROnPlateau)


def base_learning_rate(optimizer: torch.optim.Optimizer, scheduler: Any | None) -> float:
    """The learning rate a user set (the schedule's peak), as opposed to this step's value."""
    from torch.optim import lr_scheduler

    group = optimizer.param_groups[0]
    if isinstance(scheduler, lr_scheduler.OneCycleLR):
        return group["max_lr"]
    if isinstance(scheduler, lr_scheduler.LambdaLR):
        return scheduler.base_lrs[0]
    return group["lr"]


def set_base_learning_rate(optimizer: torch.optim.Optimizer, scheduler: Any | None, lr: float) -> None:
    """Change the base learning rate now; the schedule goes on from this step with the new base."""
    from torch.optim import lr_scheduler

    if isinstance(scheduler, lr_scheduler.OneCycleLR):
        for group in optimizer.param_groups:
            ratio = lr / group["max_lr"]
            for key in ("max_lr", "initial_lr", "min_lr", "lr"):
                group[key] *= ratio
    elif isinstance(scheduler, lr_scheduler.LambdaLR):
        scheduler.base_lrs = [lr] * len(optimizer.param_groups)
        for group, lr_lambda in zip(optimizer.param_groups, scheduler.lr_lambdas, strict=True):
            group["initial_lr"] = lr
            group["lr"] = lr * lr_lambda(scheduler.last_epoch)
    else:
        for group in optimizer.param_groups:
            group["lr"] = lr
