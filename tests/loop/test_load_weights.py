"""tt.load_weights: a plain torch.save(state_dict) file or a checkpoint's weights, loaded without running code."""

from __future__ import annotations

import pickle

import pytest
import torch

import tui_trainer as tt
from tui_trainer.engine.checkpoints import CheckpointError


def test_a_plain_state_dict_file_loads(task, tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(task.model.state_dict(), path)
    fresh = torch.nn.Linear(4, 1)
    tt.load_weights(fresh, path)
    assert torch.equal(fresh.weight, task.model.weight)


def test_a_state_dict_under_state_dict_loads(task, tmp_path):
    path = tmp_path / "lightning-like.ckpt"
    torch.save({"epoch": 3, "state_dict": task.model.state_dict()}, path)
    fresh = torch.nn.Linear(4, 1)
    tt.load_weights(fresh, path)
    assert torch.equal(fresh.bias, task.model.bias)


def test_a_script_runs_checkpoint_loads(task, runs_dir):
    run = tt.init(model=task.model, optimizer=task.optimizer, dir=runs_dir, quiet=True)
    for batch in run.steps(task.loader):
        run.log(loss=task.train_step(batch))
    run.finish()
    fresh = torch.nn.Linear(4, 1)
    tt.load_weights(fresh, run.run_dir / "last.pt")
    assert torch.equal(fresh.weight, task.model.weight)


def test_weights_that_do_not_fit_are_one_clear_error(task, tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(task.model.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"weights.pt: does not fit this model: the model's weights: weight is "
                                              r"1x4 in the file, 1x3 here"):
        tt.load_weights(torch.nn.Linear(3, 1), path)


class Planted:
    def __reduce__(self):
        return (print, ("code ran",))


def test_a_file_that_would_run_code_is_refused(tmp_path, capsys):
    path = tmp_path / "planted.pt"
    torch.save({"weight": Planted()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        tt.load_weights(torch.nn.Linear(4, 1), path)
    path.write_bytes(pickle.dumps({"weight": Planted()}))
    with pytest.raises(CheckpointError, match="refused: a bare pickle"):
        tt.load_weights(torch.nn.Linear(4, 1), path)
    assert "code ran" not in capsys.readouterr().out
