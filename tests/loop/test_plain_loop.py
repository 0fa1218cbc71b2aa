"""A plain loop with tt.init, run.steps and run.log is a run like any other: its files, `runs`, `checkpoints`."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
import torch
import yaml

import tui_trainer as tt
from tui_trainer.engine.checkpoints import list_checkpoints, load_checkpoint
from tui_trainer.engine.metrics import read_metrics
from tui_trainer.runs.registry import list_runs, load_run_info


def test_a_plain_loop_writes_the_run_files_and_is_listed(task, runs_dir):
    run = tt.init(model=task.model, optimizer=task.optimizer, config={"lr": 0.05, "layers": (4, 1), "note": None},
                  name="plain", dir=runs_dir, quiet=True, every_steps=4)
    for batch in run.steps(task.loader, epochs=2):
        loss = task.train_step(batch)
        run.log(loss=loss, mae=loss.sqrt())
    run.log_validation(val_loss=torch.tensor(0.25), mae=0.5)
    finished = run.finish()

    assert finished.state == "finished" and finished.step == 16 and finished.epoch == 2
    folder = run.run_dir
    assert folder.parent == runs_dir and folder.name.startswith("plain-")
    assert yaml.safe_load((folder / "config.yaml").read_text()) == {"lr": 0.05, "layers": [4, 1], "note": None}
    records = read_metrics(folder / "metrics.jsonl")
    progress = [record for record in records if record["type"] == "progress"]
    assert [record["step"] for record in progress] == [4, 8, 12, 16]
    assert all("mae" in record["metrics"] for record in progress)
    epochs = [record for record in records if record["type"] == "epoch_ended"]
    assert [record["epoch"] for record in epochs] == [1, 2]
    assert epochs[-1]["val"] == {"val_loss": 0.25, "val_mae": 0.5}
    assert set(epochs[-1]["train"]) == {"train_loss", "train_mae"}

    info = load_run_info(folder)
    assert (info.state, info.step, info.epoch, info.best) == ("finished", 16, 2, 0.25)
    assert [listed.run_id for listed in list_runs(runs_dir)] == [folder.name]
    listed = list_checkpoints(runs_dir)
    assert [item.path for item in listed] == [str(folder / "last.pt")] and listed[0].error is None
    assert (listed[0].step, listed[0].epoch, listed[0].val_loss) == (16, 2, 0.25)
    payload = load_checkpoint(folder / "last.pt")
    assert torch.equal(payload["model"]["weight"], task.model.weight.detach())
    assert not (folder / "control.sock").exists()


def test_log_refuses_what_is_not_a_number(task, runs_dir):
    run = tt.init(model=task.model, optimizer=task.optimizer, dir=runs_dir, quiet=True)
    with pytest.raises(TypeError, match=r"run.log\(loss=...\): 'high' is a str, not a number"):
        run.log(loss="high")
    with pytest.raises(ValueError, match="a tensor of shape 2x2; log one-element tensors"):
        run.log(loss=torch.ones(2, 2))
    with pytest.raises(TypeError, match="is a bool"):
        run.log(done=True)
    run.finish()


def test_progress_lines_without_a_terminal(task, runs_dir, capsys):
    run = tt.init(model=task.model, optimizer=task.optimizer, dir=runs_dir, name="lines")
    for batch in run.steps(task.loader, epochs=1):
        run.log(loss=task.train_step(batch))
    run.finish()
    out = capsys.readouterr().out
    assert f"run folder: {run.run_dir}" in out
    assert "epoch 1/1  step 8  train_loss" in out
    assert "last.pt" in out


def test_quiet_prints_nothing(task, runs_dir, capsys):
    run = tt.init(model=task.model, optimizer=task.optimizer, dir=runs_dir, quiet=True)
    for batch in run.steps(task.loader):
        run.log(loss=task.train_step(batch))
    run.finish()
    assert capsys.readouterr().out == ""


def test_a_while_loop_without_epochs(task, runs_dir):
    run = tt.init(model=task.model, optimizer=task.optimizer, dir=runs_dir, quiet=True, every_steps=5)
    batches = iter(task.loader)
    while run.step():
        run.log(loss=task.train_step(next(batches)))
        if run.global_step == 4:  # the fifth step is under way
            run.controls.stop(reason="enough")
    assert run.global_step == 5
    with run.step():
        pass  # stopped: the with form does not count a step once the run has stopped either
    finished = run.finish()
    assert (finished.state, finished.step, finished.message) == ("stopped", 5, "enough")
    assert load_checkpoint(run.run_dir / "last.pt")["meta"]["step"] == 5


def test_import_tui_trainer_does_not_import_torch():
    code = "import json, sys, tui_trainer; print(json.dumps('torch' in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) is False


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_headless_modes_progress_bar():
    from tui_trainer.headless import PlainReporter, RichReporter
    from tui_trainer.loop.hosting import reporter

    assert isinstance(reporter(False, Terminal()), RichReporter)
    assert isinstance(reporter(False, io.StringIO()), PlainReporter)
    assert reporter(True, Terminal()) is None
