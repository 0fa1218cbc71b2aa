"""Faults end a script's run in a clear state: a NaN loss raises or pauses with the last good checkpoint kept,
a script that raises is marked failed with its traceback kept, a killed one shows as lost, SIGTERM saves and
stops it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import tui_trainer as tt
from tui_trainer.engine.checkpoints import load_checkpoint
from tui_trainer.engine.events import CheckpointFailed, RunFailed, StateChanged
from tui_trainer.loop.run import ERROR_LOG
from tui_trainer.runs.registry import list_runs, load_run_info

ROOT = Path(__file__).resolve().parents[2]


def nan_after(step: int, run, task, batch):
    loss = task.train_step(batch)
    return loss * float("nan") if run.global_step >= step else loss


def test_a_nan_loss_raises_and_keeps_the_last_good_checkpoint(task, runs_dir):
    run = tt.init(model=task.model, optimizer=task.optimizer, dir=runs_dir, quiet=True, every_steps=2)
    with pytest.raises(tt.NonFiniteLoss, match="training loss is nan at step 5; lower the learning rate"):
        for batch in run.steps(task.loader, epochs=3):
            run.log(loss=nan_after(4, run, task, batch))
            if run.global_step == 1:
                good = run.save()
    info = load_run_info(run.run_dir)
    assert info.state == "failed" and "training loss is nan" in info.reason
    assert load_checkpoint(good)["meta"]["step"] == 1  # saved between steps 1 and 2
    assert not (run.run_dir / "last.pt").exists()


def test_a_nan_loss_can_pause_the_run_instead(task, runs_dir):
    run = tt.init(model=task.model, optimizer=task.optimizer, dir=runs_dir, quiet=True, every_steps=2, on_nan="pause")
    seen = []
    run._host.emit = (lambda emit: lambda event: (seen.append(event), emit(event)))(run._host.emit)
    result = []

    def train():
        for batch in run.steps(task.loader, epochs=3):
            run.log(loss=nan_after(2, run, task, batch))
        result.append(run.finish())

    thread = threading.Thread(target=train)
    thread.start()
    paused = threading.Event()
    while not any(isinstance(event, StateChanged) and event.state == "paused" for event in seen):
        paused.wait(0.01)
    assert run.global_step == 4 and thread.is_alive()
    run.controls.stop(reason="enough")
    thread.join(30)
    assert result[0].state == "stopped" and result[0].step == 4
    assert any(isinstance(event, RunFailed) and event.fault == "non_finite" for event in seen)
    refused = [event for event in seen if isinstance(event, CheckpointFailed)]
    assert refused and "the last good checkpoint is kept" in refused[0].message
    assert not (run.run_dir / "last.pt").exists()


SCRIPT = """
import os, signal, sys, torch
import tui_trainer as tt

torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
run = tt.init(model=model, optimizer=optimizer, name="script", dir=sys.argv[1], quiet=True, every_steps=1)
print(run.run_dir, flush=True)
for step, _ in enumerate(run.steps([None] * 20, epochs=3)):
    loss = model(torch.ones(2, 4)).pow(2).mean()
    loss.backward(); optimizer.step(); optimizer.zero_grad()
    run.log(loss=loss)
    if step == 3:
        {fault}
run.finish()
"""


def run_script(runs_dir: Path, fault: str, finish: bool = True) -> tuple[subprocess.CompletedProcess[str], Path]:
    script = runs_dir.parent / "train.py"
    code = textwrap.dedent(SCRIPT).replace("{fault}", fault)
    script.write_text(code if finish else code.replace("run.finish()", ""))
    result = subprocess.run([sys.executable, str(script), str(runs_dir)], capture_output=True, text=True,
                            timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return result, Path(result.stdout.splitlines()[0])


def test_a_script_that_raises_is_marked_failed_with_its_traceback(runs_dir):
    result, folder = run_script(runs_dir, "raise RuntimeError('the data went away')")
    assert result.returncode == 1 and "RuntimeError: the data went away" in result.stderr
    info = load_run_info(folder)
    assert info.state == "failed" and info.reason == "RuntimeError: the data went away"
    logged = (folder / ERROR_LOG).read_text()
    assert "train.py" in logged and "raise RuntimeError('the data went away')" in logged
    assert load_checkpoint(folder / "last.pt")["meta"]["step"] == 3  # raised in the fourth step; finite: kept


def test_a_script_that_raises_with_diverged_weights_keeps_no_last_checkpoint(runs_dir):
    result, folder = run_script(runs_dir, "model.weight.data.fill_(float('inf')); raise ValueError('diverged')")
    assert result.returncode == 1
    assert load_run_info(folder).state == "failed"
    assert not (folder / "last.pt").exists()


def test_a_killed_script_shows_as_lost(runs_dir):
    result, folder = run_script(runs_dir, "os.kill(os.getpid(), signal.SIGKILL)")
    assert result.returncode == -9
    assert [(info.run_id, info.state) for info in list_runs(runs_dir)] == [(folder.name, "lost")]


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_save_and_stop(signal_name, runs_dir):
    result, folder = run_script(runs_dir, f"os.kill(os.getpid(), signal.{signal_name})")
    assert result.returncode == 0, result.stderr
    assert f"{signal_name}: saving and stopping after this step" in result.stderr
    info = load_run_info(folder)
    assert info.state == "stopped" and info.reason == f"received {signal_name}"
    assert load_checkpoint(folder / "last.pt")["meta"]["step"] == 4


def test_signals_are_the_scripts_own_again_after_finish(task, runs_dir):
    import signal

    before = signal.getsignal(signal.SIGTERM)
    run = tt.init(model=task.model, optimizer=task.optimizer, dir=runs_dir, quiet=True)
    assert signal.getsignal(signal.SIGTERM) != before
    run.finish()
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_script_that_never_calls_finish_is_finished_at_exit(runs_dir):
    result, folder = run_script(runs_dir, "break", finish=False)
    assert result.returncode == 0, result.stderr
    info = load_run_info(folder)
    assert (info.state, info.step) == ("finished", 3)
    assert load_checkpoint(folder / "last.pt")["meta"]["step"] == 3
