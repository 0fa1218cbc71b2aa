import json
import os
import pty
import select
import signal
import subprocess
import sys
import time

import pytest

from tests.cli_helpers import ROOT, cli_env, run_cli, start_cli
from tui_trainer.engine.checkpoints import load_checkpoint
from tui_trainer.headless import format_duration


def json_events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_plain_output_for_logs_then_resume_and_listing(tmp_path):
    checkpoints = tmp_path / "ck"
    result = run_cli(["--headless", "--preset", "iris-linear", "--epochs", "3", "--checkpoint-dir", str(checkpoints)],
                     tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Traceback" not in out + result.stderr
    assert "\x1b[" not in out, "no terminal escapes when stdout is not a terminal"
    assert [line.split()[1] for line in out.splitlines() if line.startswith("epoch ")] == ["1/3", "2/3", "3/3"]
    assert "finished: 3 epoch(s)" in out
    assert "best (epoch" in out and "val_accuracy" in out
    (run_dir,) = checkpoints.iterdir()
    last = run_dir / "last.pt"
    assert f"checkpoint: {last}" in out
    assert (run_dir / "config.yaml").is_file()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {record["type"] for record in records} >= {"progress", "epoch_ended"}

    listing = run_cli(["checkpoints", str(checkpoints), "--json"], tmp_path)
    listed = [json.loads(line) for line in listing.stdout.splitlines()]
    assert any(entry["path"] == str(last) and entry["epoch"] == 3 and entry["error"] is None for entry in listed)

    saved_step = load_checkpoint(last)["trainer"]["step"]
    resumed = run_cli(["--headless", "--resume", str(last), "--epochs", "5", "--json"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    events = json_events(resumed.stdout)
    started = next(event for event in events if event["type"] == "run_started")
    assert started["start_epoch"] == 4 and started["start_step"] == saved_step
    assert started["history"], "a resumed run carries its metric history"
    epochs = [event["epoch"] for event in events if event["type"] == "epoch_ended"]
    assert epochs == [4, 5]
    assert events[-1]["type"] == "run_finished" and events[-1]["state"] == "finished"


def test_json_lines_cover_the_whole_run(tmp_path):
    result = run_cli(["--headless", "--json", "--preset", "spirals-mlp", "--epochs", "2",
                      "--checkpoint-dir", str(tmp_path / "ck")], tmp_path)
    assert result.returncode == 0, result.stderr
    events = json_events(result.stdout)
    assert len(events) == len(result.stdout.splitlines()), "every stdout line is one JSON object"
    kinds = [event["type"] for event in events]
    assert kinds[0] == "state_changed" and "run_started" in kinds and kinds[-1] == "run_finished"
    assert kinds.count("epoch_ended") == 2
    progress = [event for event in events if event["type"] == "progress"]
    assert progress and all(event["samples_per_s"] > 0 for event in progress)


@pytest.mark.slow
def test_digits_cnn_reaches_its_bar_headless(tmp_path):
    result = run_cli(["--headless", "--json", "--preset", "digits-cnn", "--checkpoint-dir", str(tmp_path / "ck")],
                     tmp_path)
    assert result.returncode == 0, result.stderr
    finished = json_events(result.stdout)[-1]
    assert finished["best"]["val_accuracy"] >= 0.95
    assert load_checkpoint(finished["checkpoint"])["meta"]["epoch"] == 15


def test_non_finite_loss_exits_1_with_the_message(tmp_path):
    result = run_cli(["--headless", "--preset", "sine-regression", "--optimizer", "sgd", "--lr", "50",
                      "--checkpoint-dir", str(tmp_path / "ck")], tmp_path)
    assert result.returncode == 1
    assert "training loss is nan" in result.stdout or "training loss is inf" in result.stdout
    assert "lower the learning rate" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert not list((tmp_path / "ck").glob("*/last.pt")), "non-finite weights are never saved"


def _wait_for_line(process: subprocess.Popen, text: str, timeout: float = 60) -> list[str]:
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"{text!r} never appeared: {seen}")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signals_save_last_checkpoint_then_exit(tmp_path, signum):
    process = start_cli(["--headless", "--preset", "digits-mlp", "--epochs", "100000",
                         "--checkpoint-dir", str(tmp_path / "ck")], tmp_path)
    try:
        _wait_for_line(process, "epoch 1/")
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 128 + signum, (stdout, stderr)
    assert "Traceback" not in stdout + stderr
    assert f"{signal.Signals(signum).name}: saving and stopping" in stderr
    (last,) = (tmp_path / "ck").glob("*/last.pt")
    payload = load_checkpoint(last)
    assert payload["meta"]["step"] > 0
    assert "stopped:" in stdout and str(last) in stdout


def test_rich_progress_on_a_terminal(tmp_path):
    leader, follower = pty.openpty()
    env = cli_env(tmp_path) | {"COLUMNS": "100", "LINES": "30", "TERM": "xterm-256color"}
    env.pop("NO_COLOR")
    process = subprocess.Popen([sys.executable, "-m", "tui_trainer", "--headless", "--preset", "iris-linear",
                                "--epochs", "3", "--checkpoint-dir", str(tmp_path / "ck")],
                               stdin=follower, stdout=follower, stderr=follower, cwd=tmp_path, env=env)
    os.close(follower)
    output = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        elif process.poll() is not None:
            break
    process.wait(timeout=30)
    os.close(leader)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text
    assert "epoch 3/3" in text and "finished: 3 epoch(s)" in text
    assert "Traceback" not in text


def test_format_duration():
    assert format_duration(None) == "?"
    assert format_duration(65) == "1m05s"
    assert format_duration(3725) == "1h02m05s"


def test_module_entry_point_matches_console_script(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tui_trainer", "--version"], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 0 and result.stdout.startswith("tui-trainer ")
