"""A checkpoint a script's own loop wrote continues only in that script: the preset paths say so in one line."""

from __future__ import annotations

import pytest
import torch

import tui_trainer as tt
from tests.cli_helpers import run_main
from tui_trainer.engine.checkpoints import CheckpointError
from tui_trainer.ui.screens.checkpoints import check_loadable


@pytest.fixture
def script_checkpoint(tmp_path) -> str:
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run = tt.init(model=model, optimizer=optimizer, name="mini", dir=str(tmp_path / "ck"), quiet=True)
    for x in run.steps([torch.randn(4, 2) for _ in range(3)], epochs=1):
        loss = model(x).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        run.log(loss=loss)
    run.finish()
    return str(next((tmp_path / "ck").glob("mini-*/last.pt")))


def test_headless_resume_of_a_script_checkpoint_names_tt_init(script_checkpoint):
    code, _, err = run_main(["--headless", "--resume", script_checkpoint])
    assert code == 2 and "Traceback" not in err
    assert err.strip().count("\n") == 0 and "tt.init(resume=" in err and script_checkpoint in err


def test_the_load_panel_refuses_it_in_one_line(script_checkpoint):
    with pytest.raises(CheckpointError, match=r"script's own training loop.*tt\.init\(resume="):
        check_loadable(script_checkpoint)
