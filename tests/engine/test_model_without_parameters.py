"""A model of the user's own with nothing to train is one line naming its import target, before training:
not torch's "optimizer got an empty parameter list" traceback, nor a first step that fails on backward."""

from __future__ import annotations

import io

import pytest

from tui_trainer.catalog.models import ImportedModelError
from tui_trainer.engine.trainer import Trainer
from tui_trainer.headless import EXIT_BAD_INPUT, run_headless
from tui_trainer.launch import LaunchOptions

MODELS = '''
import torch


class Scale(torch.nn.Module):
    def forward(self, inputs):
        return inputs.flatten(1)[:, :3] * 2.0


def no_parameters():
    return Scale()


def all_frozen(input_shape, num_outputs):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(input_shape[-1], num_outputs))
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model
'''


@pytest.mark.parametrize("factory", ["no_parameters", "all_frozen"])
def test_a_model_with_nothing_to_train_is_one_line_naming_it(factory, user_module, make_config, recorder):
    target = f"{user_module(MODELS)}:{factory}"
    config = make_config("iris-linear", model={"import": target})
    with pytest.raises(ImportedModelError) as caught:
        Trainer(config, recorder).run()
    assert str(caught.value) == f"model.import: {target} has no parameters to train (none, or none with " \
                                "requires_grad)"
    assert "running" not in recorder.states()


def test_headless_says_so_and_exits_2(user_module, checkpoint_dir, capsys):
    target = f"{user_module(MODELS)}:no_parameters"
    code = run_headless(LaunchOptions(preset="iris-linear", overrides={
        "model": {"import": target}, "device": "cpu", "checkpoint.dir": str(checkpoint_dir)}), out=io.StringIO())
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert err == f"tui-trainer: error: model.import: {target} has no parameters to train (none, or none with " \
                  "requires_grad)\n"
