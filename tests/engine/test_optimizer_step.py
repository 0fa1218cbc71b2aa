"""The optimizer's step without torch's wrappers (see optimization.unwrapped_step): the weights move exactly as
torch's own optimizer.step() moves them, and whatever watches that step (a step hook, the profiler, a schedule's
check that the optimizer stepped first) still sees every step."""

import warnings

import pytest
import torch

from tui_trainer.catalog.optimizers import OPTIMIZERS, build_optimizer
from tui_trainer.config import RunConfig
from tui_trainer.engine import schedules
from tui_trainer.engine.optimization import Optimization, step_watched, unwrapped_step


def _config(make_config, optimizer: str, scheduler: str | None) -> RunConfig:
    overrides = {"optimizer.name": optimizer, "optimizer.lr": 0.01}
    if scheduler:
        overrides["scheduler.name"] = scheduler
    return make_config("spirals-mlp", overrides)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))


def _batches(count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 2, generator=generator), torch.randint(0, 3, (8,), generator=generator))
            for _ in range(count)]


def _train_with_optimization(config: RunConfig, steps: int) -> tuple[torch.nn.Module, Optimization]:
    model = _model()
    optimization = Optimization(config, model, steps_per_epoch=steps, total_steps=steps, device=torch.device("cpu"))
    for inputs, targets in _batches(steps):
        optimization.step(torch.nn.functional.cross_entropy(model(inputs), targets))
    return model, optimization


@pytest.mark.parametrize(("optimizer", "scheduler"), [("sgd", None), ("adam", "cosine"), ("adamw", "onecycle"),
                                                      ("rmsprop", None)])
def test_the_weights_move_as_torchs_own_step_moves_them(make_config, optimizer, scheduler):
    config = _config(make_config, optimizer, scheduler)
    steps = 12
    model, optimization = _train_with_optimization(config, steps)

    reference = _model()
    plain = build_optimizer(config.optimizer.name, reference.parameters(),
                            config.optimizer.model_dump(exclude={"name"}))
    schedule = schedules.build_scheduler(config, plain, steps, steps)
    for inputs, targets in _batches(steps):
        plain.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(reference(inputs), targets).backward()
        plain.step()
        if schedule is not None and schedules.steps_per_step(schedule):
            schedule.step()

    for trained, expected in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(trained, expected, rtol=0, atol=0)
    torch.testing.assert_close(optimization.optimizer.state_dict()["state"], plain.state_dict()["state"],
                               rtol=0, atol=0)
    assert optimization.lr == plain.param_groups[0]["lr"]


def test_a_schedule_sees_the_optimizer_step_before_it_steps(make_config):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Detected call of `lr_scheduler.step()` before `optimizer.step()`"
        _train_with_optimization(_config(make_config, "adam", "cosine"), 5)


def test_a_step_hook_is_called_at_every_step(make_config):
    config = _config(make_config, "sgd", None)
    model = _model()
    optimization = Optimization(config, model, steps_per_epoch=6, total_steps=6, device=torch.device("cpu"))
    calls = []
    optimization.optimizer.register_step_post_hook(lambda optimizer, args, kwargs: calls.append(1))
    for inputs, targets in _batches(6):
        optimization.step(torch.nn.functional.cross_entropy(model(inputs), targets))
    assert len(calls) == 6


def test_a_hook_on_every_optimizer_is_called_at_every_step(make_config):
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    model = _model()
    optimization = Optimization(_config(make_config, "adam", None), model, steps_per_epoch=4, total_steps=4,
                                device=torch.device("cpu"))
    calls = []
    handle = register_optimizer_step_pre_hook(lambda optimizer, args, kwargs: calls.append(1))
    try:
        for inputs, targets in _batches(4):
            optimization.step(torch.nn.functional.cross_entropy(model(inputs), targets))
    finally:
        handle.remove()
    assert len(calls) == 4


def test_the_profiler_still_names_every_optimizer_step(make_config):
    model = _model()
    optimization = Optimization(_config(make_config, "sgd", None), model, steps_per_epoch=8, total_steps=8,
                                device=torch.device("cpu"))
    batches = _batches(5)
    inputs, targets = batches[0]
    optimization.step(torch.nn.functional.cross_entropy(model(inputs), targets))  # the first, before profiling
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        for inputs, targets in batches[1:]:
            optimization.step(torch.nn.functional.cross_entropy(model(inputs), targets))
    steps = [event for event in profile.events() if event.name == "Optimizer.step#SGD.step"]
    assert len(steps) == 4


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_catalog_optimizer_can_step_without_torchs_wrappers(name):
    model = _model()
    optimizer = build_optimizer(name, model.parameters(), {"lr": 0.01})
    assert unwrapped_step(optimizer) is not None, "this torch no longer wraps optimizer.step as it did"
    assert not step_watched(optimizer)
    handle = optimizer.register_step_pre_hook(lambda optimizer, args, kwargs: None)
    assert step_watched(optimizer)
    handle.remove()
    assert not step_watched(optimizer)
