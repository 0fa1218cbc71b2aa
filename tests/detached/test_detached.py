"""Detached runs: a background engine process with a control socket, attached to and steered by clients."""

import contextlib
import json
import os
import signal
import stat
import time
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli
from tui_trainer.detached.client import RunClient, RunUnavailable
from tui_trainer.detached.launcher import launch_detached
from tui_trainer.engine.checkpoints import load_checkpoint
from tui_trainer.engine.controls import Pause, Resume, Save, SetHyperparameters, Stop
from tui_trainer.engine.events import (
    CheckpointSaved,
    HyperparametersChanged,
    Progress,
    RunFinished,
    RunStarted,
    StateChanged,
)
from tui_trainer.engine.metrics import read_metrics
from tui_trainer.launch import LaunchOptions
from tui_trainer.runs.registry import find_run, list_runs, read_run_info

pytestmark = pytest.mark.slow


@pytest.fixture
def detached_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    options = LaunchOptions(preset="digits-mlp", overrides={"epochs": 100000, "checkpoint.dir": str(tmp_path / "ck"),
                                                            "logging.every_steps": 5})
    info = launch_detached(options, pause_on_fault=True, timeout_s=120)
    yield info
    live = read_run_info(info.run_dir)
    if live and live.state in ("running", "paused", "starting", "stopping"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(live.pid, signal.SIGKILL)


def next_event(client, kind, timeout=60, where=lambda event: True):
    deadline = time.monotonic() + timeout
    for event in client.events():
        if isinstance(event, kind) and where(event):
            return event
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"no {kind.__name__} within {timeout} s")


def test_attach_steer_detach_reattach_and_stop(detached_run):
    info = detached_run
    run_dir = Path(info.run_dir)
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((run_dir / "control.sock").stat().st_mode) == 0o600

    first = RunClient(info)
    started = first.initial_events()[0]
    assert isinstance(started, RunStarted) and started.run_id == run_dir.name
    next_event(first, Progress)

    first.send(Pause())
    next_event(first, StateChanged, where=lambda event: event.state == "paused")
    first.send(SetHyperparameters(lr=0.0123))
    changed = next_event(first, HyperparametersChanged)
    assert changed.changes == {"lr": 0.0123}
    first.send(Save(path=str(run_dir / "while-paused.pt")))
    saved = next_event(first, CheckpointSaved)
    assert saved.path.endswith("while-paused.pt")
    payload = load_checkpoint(saved.path)
    assert payload["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0123)
    first.close()  # detach: the run goes on (paused, waiting)

    time.sleep(0.5)
    second = RunClient(read_run_info(run_dir))
    replay = second.initial_events()
    history = replay[0].history
    on_disk = read_metrics(run_dir / "metrics.jsonl")
    assert history == on_disk[: len(history)] and len(history) == second.hello["records"]
    assert any(record["type"] == "hyperparameters_changed" for record in history)
    assert replay[-1].state == "paused"
    second.send(Save(path=str(run_dir / "still-paused.pt")))
    assert next_event(second, CheckpointSaved).step == saved.step, "no steps while paused"

    second.send(Resume())
    progress = next_event(second, Progress)
    # No gap: the first live record follows the last one in the history.
    steps = [record["step"] for record in history if record["type"] == "progress"]
    assert progress.step > steps[-1]

    third = RunClient(read_run_info(run_dir))  # two clients at once both see commands and events
    third.send(Stop(save=True, reason="test"))
    finished_second = next_event(second, RunFinished)
    finished_third = next_event(third, RunFinished)
    assert finished_second == finished_third
    assert finished_second.state == "stopped"
    assert load_checkpoint(finished_second.checkpoint)["meta"]["step"] == finished_second.step
    deadline = time.monotonic() + 30
    while (run_dir / "control.sock").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (run_dir / "control.sock").exists()
    assert read_run_info(run_dir).state == "stopped"


def test_killed_engine_is_lost_with_its_exit_status(detached_run, tmp_path):
    info = detached_run
    client = RunClient(info)
    next_event(client, Progress)
    os.kill(info.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while read_run_info(info.run_dir).state != "lost" and time.monotonic() < deadline:
        time.sleep(0.1)
    lost = read_run_info(info.run_dir)
    assert lost.state == "lost" and lost.exit_status == "killed by SIGKILL"
    assert not Path(info.socket_path).exists(), "the stale socket is removed"
    with pytest.raises(RunUnavailable, match="lost"):
        RunClient(lost)
    listed = run_cli(["runs", "--checkpoint-dir", str(tmp_path / "ck"), "--json"], tmp_path)
    (entry,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert entry["state"] == "lost" and entry["exit_status"] == "killed by SIGKILL"
    for checkpoint in Path(info.run_dir).glob("*.pt"):
        load_checkpoint(checkpoint)  # whatever was saved before the kill is intact


def test_stale_socket_of_a_dead_engine_is_detected_and_removed(detached_run):
    info = detached_run
    os.kill(info.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while read_run_info(info.run_dir).state != "lost" and time.monotonic() < deadline:
        time.sleep(0.1)
    # A crash nobody could record (the supervisor died too): run.json still says running, the socket file stays.
    run_file = Path(info.run_dir) / "run.json"
    run_file.write_text(json.dumps({**json.loads(run_file.read_text()), "state": "running"}))
    import socket

    with contextlib.suppress(FileNotFoundError):
        Path(info.socket_path).unlink()
    left = socket.socket(socket.AF_UNIX)  # a socket file nobody listens on, as a killed engine leaves it
    left.bind(str(info.socket_path))
    left.close()
    stale = read_run_info(info.run_dir)
    assert find_run(Path(info.run_dir).parent, None) is None, "a dead run is not offered as live"
    with pytest.raises(RunUnavailable, match="lost"):
        RunClient(stale)
    assert not Path(info.socket_path).exists()


def test_cli_stop_and_headless_detach(tmp_path):
    checkpoints = tmp_path / "ck"
    started = run_cli(["--headless", "--detach", "--preset", "iris-linear", "--epochs", "100000",
                       "--checkpoint-dir", str(checkpoints)], tmp_path)
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.split()[2]
    assert f"tui-trainer attach {run_id}" in started.stdout
    (info,) = list_runs(checkpoints)
    assert info.run_id == run_id and info.state == "running" and info.detached
    stopped = run_cli(["stop", run_id, "--checkpoint-dir", str(checkpoints)], tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped" in stopped.stdout and "last.pt" in stopped.stdout
    assert read_run_info(checkpoints / run_id).state == "stopped"
    again = run_cli(["stop", run_id, "--checkpoint-dir", str(checkpoints)], tmp_path)
    assert again.returncode == 1 and "not running (stopped)" in again.stderr


def test_detach_with_bad_input_starts_nothing(tmp_path):
    result = run_cli(["--headless", "--detach", "--preset", "iris-linear", "--lr", "-1",
                      "--checkpoint-dir", str(tmp_path / "ck")], tmp_path)
    assert result.returncode == 2 and "--lr" in result.stderr
    assert not (tmp_path / "ck").exists()


def test_attach_and_stop_name_missing_runs(tmp_path):
    result = run_cli(["stop", "nope", "--checkpoint-dir", str(tmp_path)], tmp_path)
    assert result.returncode == 2 and "no run 'nope'" in result.stderr
    result = run_cli(["attach", "--checkpoint-dir", str(tmp_path)], tmp_path)
    assert result.returncode == 2 and "no live run" in result.stderr


def test_an_engine_ending_leaves_the_socket_of_a_newer_engine_in_its_folder(tmp_path):
    """Resuming a run's own last.pt continues in its folder: the new engine binds the control socket while
    the old one may still be ending, and the old one's cleanup must not take the new socket away."""
    import socket

    from tui_trainer.detached.server import ControlServer, EventHub
    from tui_trainer.engine.controls import Controls

    ending = ControlServer(tmp_path, EventHub(), Controls())
    newer = ControlServer(tmp_path, EventHub(), Controls())
    ending.close()
    try:
        assert newer.path.exists()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(newer.path))
    finally:
        newer.close()
    assert not newer.path.exists()
