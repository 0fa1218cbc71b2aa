"""Losses: each fits its task; one that does not is a clear error; options reach torch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tui_trainer.catalog.losses import LOSSES, build_loss, losses_for
from tui_trainer.config import ConfigError, config_from_dict

TASK_DATA = {"classification": "iris", "regression": "diabetes"}


def batch(task):
    generator = torch.Generator().manual_seed(0)
    if task == "classification":
        return torch.randn(8, 3, generator=generator), torch.randint(0, 3, (8,), generator=generator)
    return torch.randn(8, 1, generator=generator), torch.randn(8, 1, generator=generator)


def test_the_promised_losses():
    assert set(losses_for("classification")) == {"cross_entropy", "nll", "bce_with_logits"}
    assert set(losses_for("regression")) == {"mse", "l1", "smooth_l1", "huber"}


@pytest.mark.parametrize("name", list(LOSSES))
def test_each_loss_computes_a_differentiable_scalar_for_its_task(name):
    outputs, targets = batch(LOSSES[name].task)
    outputs.requires_grad_(True)
    loss = build_loss(name, {}, outputs.shape[1])(outputs, targets)
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    assert outputs.grad is not None


@pytest.mark.parametrize("name", list(LOSSES))
def test_a_loss_that_does_not_fit_the_task_is_a_config_error(name):
    wrong = "regression" if LOSSES[name].task == "classification" else "classification"
    raw = {"task": wrong, "data": {"source": TASK_DATA[wrong]}, "model": {"name": "linear"}, "loss": {"name": name}}
    with pytest.raises(ConfigError) as caught:
        config_from_dict(raw, source="p.yaml")
    text = str(caught.value)
    assert text.startswith("p.yaml: loss.name: ") and f"'{name}' does not fit a {wrong} task" in text
    assert ", ".join(losses_for(wrong)) in text
    right = {**raw, "task": LOSSES[name].task, "data": {"source": TASK_DATA[LOSSES[name].task]}}
    config_from_dict(right)


def test_loss_values_match_torch():
    outputs, targets = batch("classification")
    expected = F.cross_entropy(outputs, targets)
    torch.testing.assert_close(build_loss("cross_entropy", {}, 3)(outputs, targets), expected)
    torch.testing.assert_close(build_loss("nll", {}, 3)(outputs, targets), expected)
    torch.testing.assert_close(build_loss("cross_entropy", {"label_smoothing": 0.2}, 3)(outputs, targets),
                               F.cross_entropy(outputs, targets, label_smoothing=0.2))
    torch.testing.assert_close(build_loss("bce_with_logits", {}, 3)(outputs, targets),
                               F.binary_cross_entropy_with_logits(outputs, F.one_hot(targets, 3).float()))
    outputs, targets = batch("regression")
    torch.testing.assert_close(build_loss("mse", {}, 1)(outputs, targets), F.mse_loss(outputs, targets))
    torch.testing.assert_close(build_loss("l1", {}, 1)(outputs, targets), F.l1_loss(outputs, targets))
    torch.testing.assert_close(build_loss("huber", {"delta": 0.3}, 1)(outputs, targets),
                               F.huber_loss(outputs, targets, delta=0.3))
    torch.testing.assert_close(build_loss("smooth_l1", {"beta": 0.3}, 1)(outputs, targets),
                               F.smooth_l1_loss(outputs, targets, beta=0.3))


@pytest.mark.parametrize(("name", "options", "fragment"), [
    ("mse", {"delta": 1.0}, "loss.options.delta: unknown key for loss 'mse'; allowed: none"),
    ("huber", {"delta": 0}, "loss.options.delta: input should be greater than 0"),
    ("huber", {"beta": 1.0}, "did you mean 'delta'?"),
])
def test_loss_options_are_checked(name, options, fragment):
    raw = {"task": "regression", "data": {"source": "sine"}, "model": {"name": "mlp"},
           "loss": {"name": name, "options": options}}
    with pytest.raises(ConfigError) as caught:
        config_from_dict(raw)
    assert fragment in str(caught.value)
