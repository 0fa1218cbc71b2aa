import json
import os
import pty
import select
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.cli_helpers import ROOT, cli_env, run_cli, start_cli
from tui_trainer.engine.checkpoints import load_checkpoint


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
    # Epoch lines carry the validation metrics; a progress line ("epoch 1/3  step 5/24 ...") can come in
    # between when the machine is slow enough for one to be due (every 5 s).
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch ") and "val_loss" in line]
    assert [line.split()[1] for line in epoch_lines] == ["1/3", "2/3", "3/3"]
    progress_lines = [line for line in out.splitlines() if line.startswith("epoch ") and "val_loss" not in line]
    assert all(" loss " in line and "/24" in line for line in progress_lines), progress_lines
    assert "finished: after epoch 3 (step" in out
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
                     tmp_path, timeout=900)
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


class Output:
    """A process's stdout and stderr, each read by a thread as it comes: waiting for a line then has a real
    deadline (a blocking readline has none), and neither pipe can fill up while the test waits."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.readers = [threading.Thread(target=self._read, args=(process.stdout, self.stdout), daemon=True),
                        threading.Thread(target=self._read, args=(process.stderr, self.stderr), daemon=True)]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    def wait_for_line(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in list(self.stdout)):
            assert self.process.poll() is None, f"the process ended before {text!r}: {self.stdout} {self.stderr}"
            assert time.monotonic() < deadline, f"{text!r} never appeared in {timeout} s: {self.stdout}"
            time.sleep(0.05)

    def finish(self, timeout: float) -> tuple[str, str]:
        self.process.wait(timeout=timeout)
        for reader in self.readers:
            reader.join(timeout=30)
        return "".join(self.stdout), "".join(self.stderr)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signals_save_last_checkpoint_then_exit(tmp_path, signum):
    process = start_cli(["--headless", "--preset", "digits-mlp", "--epochs", "100000",
                         "--checkpoint-dir", str(tmp_path / "ck")], tmp_path)
    output = Output(process)
    try:
        # Generous limits: on a loaded machine the start (torch, scikit-learn) alone has taken over a minute.
        output.wait_for_line("epoch 1/", timeout=300)
        process.send_signal(signum)
        stdout, stderr = output.finish(timeout=300)
    finally:
        process.kill()
        process.wait()
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
    deadline = time.monotonic() + 600  # a limit for a hang, not a wait: the loop ends with the process
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
    process.wait(timeout=60)
    os.close(leader)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text
    assert "epoch 3/3" in text and "finished: after epoch 3 (step" in text
    assert "Traceback" not in text


def test_module_entry_point_matches_console_script(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tui_trainer", "--version"], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 0 and result.stdout.startswith("tui-trainer ")
