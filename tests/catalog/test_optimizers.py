"""Optimizers: each gets only the hyperparameters it takes."""

from __future__ import annotations

import pytest
import torch

from tui_trainer.catalog.optimizers import LIVE_TUNABLE, OPTIMIZERS, build_optimizer
from tui_trainer.config import ConfigError, config_from_dict

EVERYTHING = {"lr": 0.05, "weight_decay": 0.01, "momentum": 0.8, "nesterov": True, "betas": [0.8, 0.95],
              "alpha": 0.9}
TORCH_CLASS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
               "rmsprop": torch.optim.RMSprop}


def raw(optimizer):
    return {"task": "classification", "data": {"source": "iris"}, "model": {"name": "linear"},
            "loss": {"name": "cross_entropy"}, "optimizer": optimizer}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_builds_with_only_its_hyperparameters(name):
    parameters = [torch.nn.Parameter(torch.zeros(3))]
    optimizer = build_optimizer(name, parameters, EVERYTHING)
    assert type(optimizer) is TORCH_CLASS[name]
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.05 and group["weight_decay"] == 0.01
    takes = OPTIMIZERS[name].hyperparameters
    if "momentum" in takes:
        assert group["momentum"] == 0.8
    if "betas" in takes:
        assert group["betas"] == (0.8, 0.95)
    if "alpha" in takes:
        assert group["alpha"] == 0.9
    if "nesterov" in takes:
        assert group["nesterov"] is True


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_none_means_torch_default(name):
    optimizer = build_optimizer(name, [torch.nn.Parameter(torch.zeros(1))],
                                {"lr": 0.1, "momentum": None, "betas": None, "alpha": None, "nesterov": None})
    reference = TORCH_CLASS[name]([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    mine, theirs = optimizer.param_groups[0], reference.param_groups[0]
    implementation = {"params", "fused", "foreach"}
    assert {key: mine[key] for key in theirs if key not in implementation} == {
        key: theirs[key] for key in theirs if key not in implementation}


@pytest.mark.parametrize(("name", "field"), [
    (name, field) for name in OPTIMIZERS for field in ("momentum", "nesterov", "betas", "alpha")
    if field not in OPTIMIZERS[name].hyperparameters
])
def test_a_hyperparameter_the_optimizer_does_not_take_is_a_config_error(name, field):
    with pytest.raises(ConfigError) as caught:
        value = False if field == "nesterov" else EVERYTHING[field]
        config_from_dict(raw({"name": name, "lr": 0.01, field: value}), source="p.yaml")
    text = str(caught.value)
    assert text.startswith(f"p.yaml: optimizer.{field}: {name} does not take {field}; it takes: ")
    assert ", ".join(OPTIMIZERS[name].hyperparameters) in text


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_each_takes_what_it_lists(name):
    optimizer = {"name": name, **{field: EVERYTHING[field] for field in OPTIMIZERS[name].hyperparameters}}
    config = config_from_dict(raw(optimizer))
    assert config.optimizer.name == name


def test_live_tunable():
    assert set(LIVE_TUNABLE) == {"lr", "weight_decay", "momentum"}
