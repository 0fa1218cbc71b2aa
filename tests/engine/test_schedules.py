"""Learning-rate schedules built from the config, and live changes of the base rate that keep their shape."""

from __future__ import annotations

import math

import pytest
import torch
from torch.optim import lr_scheduler

from tui_trainer.engine.schedules import (
    base_learning_rate,
    build_scheduler,
    set_base_learning_rate,
    steps_per_step,
)

STEPS_PER_EPOCH, TOTAL = 10, 100


def build(make_config, scheduler, lr=0.1, monitor="val_loss", preset="digits-mlp"):
    config = make_config(preset, optimizer={"name": "sgd", "lr": lr, "momentum": 0.9}, scheduler=scheduler,
                         checkpoint={"monitor": monitor})
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr, momentum=0.9)
    return optimizer, build_scheduler(config, optimizer, STEPS_PER_EPOCH, TOTAL)


def trajectory(optimizer, scheduler, steps=TOTAL) -> list[float]:
    lrs = [optimizer.param_groups[0]["lr"]]
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


def test_no_schedule(make_config):
    optimizer, scheduler = build(make_config, {"name": "none"})
    assert scheduler is None and not steps_per_step(None)
    assert base_learning_rate(optimizer, None) == 0.1
    set_base_learning_rate(optimizer, None, 0.3)
    assert optimizer.param_groups[0]["lr"] == 0.3


def test_warmup_alone(make_config):
    optimizer, scheduler = build(make_config, {"name": "none", "warmup_steps": 4})
    assert isinstance(scheduler, lr_scheduler.LambdaLR) and steps_per_step(scheduler)
    assert trajectory(optimizer, scheduler, 6) == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1, 0.1])


def test_cosine_ends_at_min_lr(make_config):
    optimizer, scheduler = build(make_config, {"name": "cosine", "min_lr": 0.01})
    lrs = trajectory(optimizer, scheduler)
    assert lrs[0] == pytest.approx(0.1) and lrs[TOTAL] == pytest.approx(0.01)
    assert lrs[50] == pytest.approx(0.01 + 0.09 * 0.5)
    assert lrs == sorted(lrs, reverse=True)


def test_cosine_with_warmup(make_config):
    optimizer, scheduler = build(make_config, {"name": "cosine", "warmup_steps": 10})
    lrs = trajectory(optimizer, scheduler)
    assert lrs[:10] == pytest.approx([0.1 * (step + 1) / 10 for step in range(10)])
    assert lrs[10] == pytest.approx(0.1)
    assert lrs[55] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert lrs[TOTAL] == pytest.approx(0.0, abs=1e-12)


def test_step_decay_per_epochs(make_config):
    optimizer, scheduler = build(make_config, {"name": "step", "step_size": 3, "gamma": 0.5})
    lrs = trajectory(optimizer, scheduler)
    assert lrs[29] == pytest.approx(0.1) and lrs[30] == pytest.approx(0.05)
    assert lrs[59] == pytest.approx(0.05) and lrs[60] == pytest.approx(0.025) and lrs[90] == pytest.approx(0.0125)


def test_onecycle(make_config):
    optimizer, scheduler = build(make_config, {"name": "onecycle", "max_lr": 0.5})
    assert isinstance(scheduler, lr_scheduler.OneCycleLR) and steps_per_step(scheduler)
    lrs = trajectory(optimizer, scheduler, TOTAL - 1)
    assert max(lrs) == pytest.approx(0.5, rel=1e-3) and lrs[0] == pytest.approx(0.02)
    assert base_learning_rate(optimizer, scheduler) == 0.5
    _, default = build(make_config, {"name": "onecycle"})
    assert default.optimizer.param_groups[0]["max_lr"] == 0.1


@pytest.mark.parametrize(("monitor", "preset", "mode"), [("val_loss", "digits-mlp", "min"),
                                                        ("val_accuracy", "digits-mlp", "max"),
                                                        ("val_r2", "sine-regression", "max")])
def test_plateau_follows_the_monitored_metric(make_config, monitor, preset, mode):
    optimizer, scheduler = build(make_config, {"name": "plateau", "factor": 0.5, "patience": 1}, monitor=monitor,
                                 preset=preset)
    assert isinstance(scheduler, lr_scheduler.ReduceLROnPlateau) and not steps_per_step(scheduler)
    assert scheduler.mode == mode
    worse = 1.0 if mode == "min" else 0.0
    for value in (0.5, worse, worse):
        scheduler.step(value)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)


def test_live_change_keeps_the_cosine_shape(make_config):
    optimizer, scheduler = build(make_config, {"name": "cosine", "warmup_steps": 10})
    trajectory(optimizer, scheduler, 40)
    set_base_learning_rate(optimizer, scheduler, 0.2)
    assert base_learning_rate(optimizer, scheduler) == 0.2
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.2 * 0.5 * (1 + math.cos(math.pi * 30 / 90)))
    rest = trajectory(optimizer, scheduler, 60)
    assert rest[10] == pytest.approx(0.2 * 0.5 * (1 + math.cos(math.pi * 40 / 90)))
    assert rest[-1] == pytest.approx(0.0, abs=1e-12)


def test_live_change_scales_onecycle(make_config):
    optimizer, scheduler = build(make_config, {"name": "onecycle", "max_lr": 0.4})
    trajectory(optimizer, scheduler, 20)
    before = optimizer.param_groups[0]["lr"]
    set_base_learning_rate(optimizer, scheduler, 0.8)
    group = optimizer.param_groups[0]
    assert group["max_lr"] == pytest.approx(0.8) and group["lr"] == pytest.approx(before * 2)
    assert base_learning_rate(optimizer, scheduler) == pytest.approx(0.8)
    assert max(trajectory(optimizer, scheduler, 40)) == pytest.approx(0.8, rel=1e-3)


def test_live_change_with_plateau_sets_the_rate(make_config):
    optimizer, scheduler = build(make_config, {"name": "plateau"})
    set_base_learning_rate(optimizer, scheduler, 0.02)
    assert optimizer.param_groups[0]["lr"] == 0.02 and base_learning_rate(optimizer, scheduler) == 0.02


@pytest.mark.parametrize("schedule", [{"name": "cosine", "warmup_steps": 5}, {"name": "step", "step_size": 2},
                                      {"name": "onecycle"}], ids=lambda schedule: schedule["name"])
def test_state_dict_resumes_the_schedule(make_config, schedule):
    optimizer, scheduler = build(make_config, schedule)
    trajectory(optimizer, scheduler, 37)
    state, optimizer_state = scheduler.state_dict(), optimizer.state_dict()
    expected = trajectory(optimizer, scheduler, 30)
    again_optimizer, again = build(make_config, schedule)
    again_optimizer.load_state_dict(optimizer_state)
    again.load_state_dict(state)
    assert trajectory(again_optimizer, again, 30) == expected
