"""The real app in a pseudo-terminal: Ctrl+C asks before it leaves; SIGINT, SIGTERM and SIGHUP leave
without asking, during training and in the middle of a save (SIGTERM during training is in
tests/ui/test_run_app.py). Every time last.pt is written and loads, the process exits with the documented
code and no traceback, and the terminal leaves the alternate screen."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.reliability.app_helpers import (
    Tally,
    Terminal,
    restored_terminal,
    training_run_dir,
    wait_until,
)
from tui_trainer.engine.checkpoints import TEMP_PREFIX, load_checkpoint

pytestmark = pytest.mark.slow

TALLY = Tally("test_app_signals")

COMMAND = ["--preset", "digits-mlp", "--start", "--epochs", "100000"]
WIDE = ["--set", "model.options.hidden=[2048, 2048]", "--set", "checkpoint.every_epochs=0",
        "--set", "checkpoint.save_best=false"]
"""A wide model and no periodic saves: a manual save then takes long enough (about 0.2 s of writing) to
signal in the middle of it, and its temporary file is the only one in the run folder."""
SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]


def start(tmp_path: Path, *extra: str) -> tuple[Terminal, Path]:
    folder = tmp_path / "ck"
    terminal = Terminal([*COMMAND, "--checkpoint-dir", str(folder), *extra], tmp_path)
    try:
        run_dir = wait_until(lambda: training_run_dir(folder), "training progress", timeout=90,
                             process=terminal.process)
        terminal.wait_for_output(b"Step ", timeout=60)  # the app shows the run (its engine process started first)
    except BaseException:
        terminal.close()
        raise
    return terminal, run_dir


def assert_left_cleanly(code: int, output: bytes, expected_code: int, run_dir: Path) -> dict:
    text = output.decode(errors="replace")
    assert code == expected_code, (code, text[-2000:])
    assert "Traceback" not in text and "Error" not in text.split("\x1b[?1049l")[-1], text[-2000:]
    assert restored_terminal(output), "the terminal was left in the alternate screen"
    payload = load_checkpoint(run_dir / "last.pt")
    assert payload["meta"]["step"] > 0 and payload["meta"]["reason"] == "last"
    assert not [name for name in os.listdir(run_dir) if name.startswith(TEMP_PREFIX)], "a temporary file was left"
    assert f"last checkpoint {run_dir / 'last.pt'}" in text, "the closing line names last.pt"
    return payload


def test_ctrl_c_asks_then_saves_and_leaves(tmp_path):
    with TALLY.attempt("4 signals", "ctrl+c key: confirm, save, leave"):
        terminal, run_dir = start(tmp_path)
        try:
            mark = len(terminal.output)
            terminal.type(b"\x03")  # what the terminal sends for Ctrl+C: a key in the app, not SIGINT
            mark = terminal.wait_for_output(b"Save and quit", since=mark)
            assert not (run_dir / "last.pt").exists(), "nothing is saved before the user confirms"
            terminal.type(b"y")
            code, output = terminal.finish()
        finally:
            terminal.close()
        assert_left_cleanly(code, output, 0, run_dir)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP], ids=lambda signum: signal.Signals(signum).name)
def test_a_signal_during_training_saves_last_pt_and_leaves(tmp_path, signum):
    with TALLY.attempt("4 signals", f"{signal.Signals(signum).name} during training"):
        terminal, run_dir = start(tmp_path)
        try:
            terminal.process.send_signal(signum)
            code, output = terminal.finish()
        finally:
            terminal.close()
        assert_left_cleanly(code, output, 128 + signum, run_dir)


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda signum: signal.Signals(signum).name)
def test_a_signal_in_the_middle_of_a_save_keeps_both_checkpoints(tmp_path, signum):
    with TALLY.attempt("4 signals", f"{signal.Signals(signum).name} during a save"):
        terminal, run_dir = start(tmp_path, *WIDE)
        try:
            mark = len(terminal.output)
            terminal.type(b"s")
            terminal.wait_for_output(b"Save a checkpoint", since=mark)
            terminal.type(b"\r")

            def manual_save_in_progress() -> str | None:
                for name in os.listdir(run_dir):
                    if name.startswith(TEMP_PREFIX) and not name.startswith(f"{TEMP_PREFIX}last.pt"):
                        return name
                return None

            temporary = wait_until(manual_save_in_progress, "the manual save's temporary file", timeout=30,
                                   every=0.002, process=terminal.process)
            terminal.process.send_signal(signum)
            code, output = terminal.finish()
        finally:
            terminal.close()
        last = assert_left_cleanly(code, output, 128 + signum, run_dir)
        name = temporary.removeprefix(TEMP_PREFIX).rsplit(".", 1)[0]
        manual = load_checkpoint(run_dir / name)
        assert manual["meta"]["reason"] == "manual"
        assert 0 < manual["meta"]["step"] <= last["meta"]["step"]


def test_a_killed_app_leaves_a_saved_stopped_run_not_an_orphan(tmp_path):
    """The app's engine process notices its app is gone (SIGKILL: no handler ran) and saves and stops."""
    with TALLY.attempt("4 signals", "SIGKILL to the app: its engine process saves and stops"):
        terminal, run_dir = start(tmp_path)
        try:
            engine_pid = json.loads((run_dir / "run.json").read_text())["pid"]
            assert engine_pid != terminal.process.pid, "the run trains in an engine process of its own"
            terminal.process.kill()
            terminal.finish()
        finally:
            terminal.close()
        info = wait_until(lambda: _final(run_dir), "the engine to stop", timeout=60)
        assert info["state"] == "stopped" and "went away" in info["reason"], info
        assert load_checkpoint(run_dir / "last.pt")["meta"]["reason"] == "last"
        wait_until(lambda: not _alive(engine_pid), "the engine process to exit", timeout=30)


def _final(run_dir: Path) -> dict | None:
    info = json.loads((run_dir / "run.json").read_text())
    return info if info["state"] in ("stopped", "finished", "failed") else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
