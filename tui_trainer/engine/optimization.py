"""How a run's weights move: the optimizer, its learning-rate schedule, the fp16 grad scaler and gradient
clipping; live hyperparameter changes; and their states for an exact resume."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from torch.optim import optimizer as optimizer_module

from tui_trainer.catalog.optimizers import OPTIMIZERS, build_optimizer
from tui_trainer.config import OptimizerConfig, RunConfig
from tui_trainer.engine import checkpoints, schedules
from tui_trainer.engine.controls import hyperparameter_problem
from tui_trainer.text import printable


class Optimization:
    """The optimizer over the model's parameters, with the schedule, scaler and clipping config asks for."""

    def __init__(self, config: RunConfig, model: torch.nn.Module, steps_per_epoch: int, total_steps: int,
                 device: torch.device) -> None:
        self.model = model
        self.monitor = config.checkpoint.monitor
        self.clip = config.grad_clip
        self.optimizer = build_optimizer(config.optimizer.name, model.parameters(),
                                         config.optimizer.model_dump(exclude={"name"}))
        self._parameters = [parameter for group in self.optimizer.param_groups for parameter in group["params"]]
        self.scheduler = schedules.build_scheduler(config, self.optimizer, steps_per_epoch, total_steps)
        self.per_step = schedules.steps_per_step(self.scheduler)
        """The schedule advances every step (else once an epoch, on the monitored metric)."""
        self.scaler = torch.amp.GradScaler(device.type) if config.precision == "fp16" else None
        self._unwrapped_step = unwrapped_step(self.optimizer)
        self._stepped = False

    @property
    def lr(self) -> float:
        """This step's learning rate."""
        return self.optimizer.param_groups[0]["lr"]

    def step(self, loss: torch.Tensor) -> None:
        """Back-propagate loss and update the weights (and a per-step schedule)."""
        # What optimizer.zero_grad(set_to_none=True) does, without its profiler and compiler wrappers: 12 us
        # a step, 7% of a run of iris-linear.
        for parameter in self._parameters:
            parameter.grad = None
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            if self.clip:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            if self.clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
            self._optimizer_step()
        if self.per_step:
            self.scheduler.step()

    def _optimizer_step(self) -> None:
        """optimizer.step(); after the first, without torch's wrappers while nothing watches them (see
        unwrapped_step). The first goes through them: a schedule learns there that the optimizer stepped."""
        if self._unwrapped_step is not None and self._stepped and not step_watched(self.optimizer):
            self._unwrapped_step()
            return
        self.optimizer.step()
        self._stepped = True

    def end_epoch(self, val: dict[str, float]) -> None:
        """A per-epoch schedule (plateau) steps on the monitored metric, when it is a number."""
        if self.scheduler is None or self.per_step:
            return
        monitored = val.get(self.monitor)
        if monitored is not None and math.isfinite(monitored):
            self.scheduler.step(monitored)

    def forget_gradients(self) -> None:
        """After running out of memory in a step: free what the gradients hold."""
        self.optimizer.zero_grad(set_to_none=True)

    # ------------------------------------------------------------ live changes

    def change(self, requested: dict[str, float], settings: OptimizerConfig
               ) -> tuple[dict[str, float], dict[str, float], list[str]]:
        """Set hyperparameters now (lr keeps the schedule's shape). Returns what changed, the values before,
        and one line for each refused (unchanged) one."""
        changes, previous, refused = {}, {}, []
        group, takes = self.optimizer.param_groups[0], OPTIMIZERS[settings.name].hyperparameters
        for key, value in requested.items():
            # The preset's bounds, as for the socket and the panel; and what the preset's other settings allow.
            problem = hyperparameter_problem(key, value) or _combination_problem(settings, key, value)
            if problem:
                refused.append(f"{problem}; unchanged")
                continue
            if key == "lr":
                previous[key] = schedules.base_learning_rate(self.optimizer, self.scheduler)
                schedules.set_base_learning_rate(self.optimizer, self.scheduler, value)
            elif key not in group or (key == "momentum" and "momentum" not in takes):
                refused.append(f"{settings.name} has no {key}; unchanged")
                continue
            else:
                previous[key] = group[key]
                for each in self.optimizer.param_groups:
                    each[key] = value
            changes[key] = value
        return changes, previous, refused

    # ------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
        }

    def mismatch(self, payload: dict[str, Any]) -> str | None:
        """Why a checkpoint's states do not fit this optimizer, schedule or scaler (None: they fit). torch
        loads a scheduler's or a grad scaler's state without a look: its shape is checked here."""
        problem = checkpoints.optimizer_mismatch(self.optimizer, payload["optimizer"])
        for name, own in (("scheduler", self.scheduler), ("scaler", self.scaler)):
            if problem is None and own is not None and payload.get(name):
                problem = checkpoints.structure_mismatch(own.state_dict(), payload[name], name)
        return problem

    def load_state_dict(self, payload: dict[str, Any], config: RunConfig, path: Path) -> None:
        """Load the states mismatch() passed; config's own settings that a state also holds win (see
        schedules.follow_config). Raises CheckpointError for a state torch refuses."""
        # How this machine runs the optimizer (fused kernels or not) is its own, not the file's.
        implementations = [{key: group[key] for key in ("fused", "foreach") if key in group}
                           for group in self.optimizer.param_groups]
        try:
            self.optimizer.load_state_dict(payload["optimizer"])
            for group, implementation in zip(self.optimizer.param_groups, implementations, strict=True):
                group.update(implementation)
            if self.scheduler is not None and payload.get("scheduler"):
                self.scheduler.load_state_dict(payload["scheduler"])
                schedules.follow_config(self.scheduler, config)
            if self.scaler is not None and payload.get("scaler"):
                self.scaler.load_state_dict(payload["scaler"])
        except (RuntimeError, ValueError, KeyError, TypeError) as error:
            raise checkpoints.CheckpointError(path, "does not fit this run's model or optimizer: "
                                                    f"{first_line(error)}") from None


def unwrapped_step(optimizer: torch.optim.Optimizer) -> Callable[[], Any] | None:
    """The optimizer's own step, bound to it, without the wrapper torch puts around every optimizer's step (a
    profiler label and the step hooks; a schedule adds one more that notes the call): 30-50 us of a 250 us
    step of iris-linear on a CPU. None where this torch has no such wrapper. Call it only while step_watched()
    is False."""
    wrapper = type(optimizer).step
    step = getattr(wrapper, "__wrapped__", None)
    if step is None or not getattr(wrapper, "hooked", False):
        return None
    return functools.partial(step, optimizer)


def step_watched(optimizer: torch.optim.Optimizer) -> bool:
    """Whether anything sees optimizer.step's wrappers: the profiler running, or a step hook (of this optimizer,
    or of every one). True where this torch keeps them elsewhere."""
    return bool(torch.autograd._profiler_enabled()
                or getattr(optimizer, "_optimizer_step_pre_hooks", True)
                or getattr(optimizer, "_optimizer_step_post_hooks", True)
                or getattr(optimizer_module, "_global_optimizer_pre_hooks", True)
                or getattr(optimizer_module, "_global_optimizer_post_hooks", True))


def _combination_problem(settings: OptimizerConfig, key: str, value: float) -> str:
    """A change the optimizer's other settings refuse (nesterov needs momentum), as the preset would: so a
    checkpoint's config stays one that loads."""
    try:
        OptimizerConfig.model_validate({**settings.model_dump(exclude_none=True), key: value})
    except ValidationError as error:
        return f"{key} {value!r}: {printable(error.errors(include_url=False)[0]['msg'].removeprefix('Value error, '))}"
    return ""


def first_line(error: BaseException) -> str:
    """An error's first line, shortened and shown literally (its type's name when it has no text)."""
    text = str(error).strip()
    return printable(text.splitlines()[0][:200]) if text else type(error).__name__
