"""The real process in a pseudo-terminal: a dropped terminal (SIGHUP) or SIGTERM during a run saves
last.pt and ends the process; a bad command line ends with 2 before the screen opens."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.reliability.app_helpers import Terminal
from tui_trainer.launch import LaunchOptions
from tui_trainer.ui.app import run_app

SCRIPT = """
import sys
from tui_trainer.launch import LaunchOptions
from tui_trainer.ui.app import run_app
sys.exit(run_app(LaunchOptions(preset="iris-linear", start=True, overrides={
    "checkpoint.dir": sys.argv[1], "epochs": 100000, "checkpoint.every_epochs": 0, "checkpoint.save_best": False})))
"""


def wait_for_training(folder: Path, process: subprocess.Popen, timeout: float = 60) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the app ended before training"
        for metrics in folder.glob("*/metrics.jsonl"):
            if '"progress"' in metrics.read_text():
                return metrics.parent
        time.sleep(0.1)
    raise AssertionError("no training progress within the time limit")


@pytest.mark.parametrize("how", ["SIGTERM", "hang-up"])
def test_leaving_on_a_signal_saves_last_pt(tmp_path, how):
    terminal = Terminal([str(tmp_path)], tmp_path, size=(80, 24), script=SCRIPT)
    try:
        run_dir = wait_for_training(tmp_path, terminal.process)
        if how == "SIGTERM":
            terminal.process.send_signal(signal.SIGTERM)
        else:
            terminal.hang_up()  # as when an SSH connection drops: the kernel sends SIGHUP
        code = terminal.process.wait(timeout=40)
    finally:
        terminal.close()
    expected = signal.SIGTERM if how == "SIGTERM" else signal.SIGHUP
    assert code == 128 + expected
    assert (run_dir / "last.pt").is_file()
    if how == "SIGTERM":
        assert b"\x1b[?1049l" in terminal.output, "the terminal's main screen was not restored"


def test_a_bad_command_line_ends_with_2_before_the_screen_opens(tmp_path, capsys):
    assert run_app(LaunchOptions(preset="no-such-preset")) == 2
    assert "no preset named 'no-such-preset'" in capsys.readouterr().err
    assert run_app(LaunchOptions(preset="iris-linear", overrides={"optimizer.lr": -1})) == 2
    assert run_app(LaunchOptions(resume=str(tmp_path / "missing.pt"))) == 2
