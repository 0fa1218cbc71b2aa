"""Data-parallel runs through PyTorch's own launcher: torchrun --nproc-per-node 2 on the CPU (gloo)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.cli_helpers import cli_env, run_cli
from tui_trainer.detached.client import RunClient
from tui_trainer.detached.launcher import free_port
from tui_trainer.engine.checkpoints import load_checkpoint
from tui_trainer.engine.controls import Pause, Resume, Save, SetHyperparameters, Stop
from tui_trainer.engine.events import CheckpointSaved, HyperparametersChanged, Progress, StateChanged
from tui_trainer.engine.metrics import read_metrics
from tui_trainer.runs.registry import list_runs

pytestmark = pytest.mark.slow


def torchrun_command(args: list[str], processes: int = 2) -> list[str]:
    # A port of its own per launch: all launches of a test session used to share one (pid-derived).
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
            "--master-port", str(free_port()), "-m", "tui_trainer", "--headless", *args]


def torchrun_env(tmp_path: Path) -> dict[str, str]:
    return {**cli_env(tmp_path), "OMP_NUM_THREADS": "1"}


def run_torchrun(args, tmp_path, timeout=300):
    return subprocess.run(torchrun_command(args), capture_output=True, text=True, cwd=tmp_path,
                          env=torchrun_env(tmp_path), timeout=timeout, stdin=subprocess.DEVNULL)


def events_of(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_two_processes_converge_rank0_writes_and_the_checkpoint_resumes_alone(tmp_path):
    checkpoints = tmp_path / "ck"
    result = run_torchrun(["--json", "--preset", "digits-mlp", "--batch-size", "32",
                           "--checkpoint-dir", str(checkpoints)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    events = events_of(result.stdout)
    kinds = [event["type"] for event in events]
    assert kinds.count("run_started") == 1 and kinds.count("run_finished") == 1, "rank 0 alone speaks"
    started = next(event for event in events if event["type"] == "run_started")
    assert started["world_size"] == 2
    finished = events[-1]
    assert finished["state"] == "finished" and finished["best"]["val_accuracy"] >= 0.95

    (run_dir,) = checkpoints.iterdir()
    records = read_metrics(run_dir / "metrics.jsonl")
    assert len([r for r in records if r["type"] == "epoch_ended"]) == 20, "one writer: no duplicated records"
    payload = load_checkpoint(run_dir / "last.pt")
    assert not any(key.startswith("module.") for key in payload["model"]), "the plain model, not the DDP wrapper"

    resumed = run_cli(["--headless", "--json", "--resume", str(run_dir / "last.pt"), "--epochs", "21"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    resumed_events = events_of(resumed.stdout)
    assert resumed_events[-1]["state"] == "finished"
    assert [e["epoch"] for e in resumed_events if e["type"] == "epoch_ended"] == [21]


def test_world_size_two_matches_world_size_one_at_the_same_global_batch(tmp_path):
    common = ["--json", "--preset", "digits-mlp", "--epochs", "2", "--set", "data.shuffle=false",
              "--set", "model.options.dropout=0.0", "--set", "logging.every_steps=5",
              "--set", "logging.every_ms=3600000"]
    single = run_cli(["--headless", *common, "--batch-size", "64", "--checkpoint-dir", str(tmp_path / "one")], tmp_path)
    double = run_torchrun([*common, "--batch-size", "32", "--checkpoint-dir", str(tmp_path / "two")], tmp_path)
    assert single.returncode == 0 and double.returncode == 0, double.stderr[-3000:]

    def series(stdout):
        events = events_of(stdout)
        progress = [(e["step"], e["train_loss"], e["train_accuracy"]) for e in events if e["type"] == "progress"]
        epochs = [e["val"] for e in events if e["type"] == "epoch_ended"]
        return progress, epochs

    progress_one, epochs_one = series(single.stdout)
    progress_two, epochs_two = series(double.stdout)
    assert [p[0] for p in progress_one] == [p[0] for p in progress_two]
    for (_, loss_one, acc_one), (_, loss_two, acc_two) in zip(progress_one, progress_two, strict=True):
        assert loss_two == pytest.approx(loss_one, rel=1e-3, abs=1e-4)
        assert acc_two == pytest.approx(acc_one, abs=1e-6)
    for one, two in zip(epochs_one, epochs_two, strict=True):
        assert two["val_loss"] == pytest.approx(one["val_loss"], rel=1e-3)
        assert two["val_accuracy"] == pytest.approx(one["val_accuracy"], abs=1e-6)


def _start_torchrun(tmp_path, checkpoints):
    process = subprocess.Popen(
        torchrun_command(["--preset", "digits-mlp", "--batch-size", "32", "--epochs", "100000",
                          "--set", "logging.every_steps=5", "--checkpoint-dir", str(checkpoints)]),
        cwd=tmp_path, env=torchrun_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runs = list_runs(checkpoints)
        if runs and runs[0].state == "running" and runs[0].socket_path.exists():
            return process, runs[0]
        if process.poll() is not None:
            raise AssertionError(process.stderr.read()[-3000:])
        time.sleep(0.2)
    process.kill()
    raise AssertionError("the torchrun run did not start")


def _next(client, kind, where=lambda event: True, timeout=60):
    deadline = time.monotonic() + timeout
    for event in client.events():
        if isinstance(event, kind) and where(event):
            return event
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"no {kind.__name__}")


def _applied(log_file: Path, kind: str) -> set[int]:
    ranks = set()
    for line in log_file.read_text().splitlines():
        if "applies" in line and f"'type': '{kind}'" in line:
            ranks.add(int(line.split("rank ")[1].split()[0]))
    return ranks


def test_attach_controls_reach_both_ranks(tmp_path):
    checkpoints = tmp_path / "ck"
    process, info = _start_torchrun(tmp_path, checkpoints)
    try:
        assert info.attachable and info.world_size == 2
        client = RunClient(info)
        _next(client, Progress)
        client.send(Pause())
        _next(client, StateChanged, lambda event: event.state == "paused")
        client.send(SetHyperparameters(lr=0.004))
        assert _next(client, HyperparametersChanged).changes == {"lr": 0.004}
        client.send(Save())
        saved = _next(client, CheckpointSaved)
        assert load_checkpoint(saved.path)["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.004)
        client.send(Resume())
        after = _next(client, Progress)
        assert after.step > saved.step and after.lr == pytest.approx(0.004)
        client.send(Stop(save=True, reason="test"))
        assert process.wait(timeout=120) == 0
        log_file = tmp_path / "state" / "tui-trainer" / "tui-trainer.log"
        for kind in ("pause", "set_hyperparameters", "save", "resume", "stop"):
            assert _applied(log_file, kind) == {0, 1}, kind
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def test_sigterm_to_one_rank_stops_both_with_last_checkpoint(tmp_path):
    checkpoints = tmp_path / "ck"
    process, info = _start_torchrun(tmp_path, checkpoints)
    try:
        workers = psutil.Process(process.pid).children(recursive=True)
        rank1 = next(worker for worker in workers if worker.environ().get("RANK") == "1")
        rank1.send_signal(signal.SIGTERM)
        code = process.wait(timeout=120)
        assert code != 0  # torchrun reports the stop as the workers' exit status 143
        last = Path(info.run_dir) / "last.pt"
        payload = load_checkpoint(last)
        assert payload["trainer"]["step"] > 0
        assert list_runs(checkpoints)[0].state == "stopped"
        assert not psutil.pid_exists(rank1.pid) or rank1.status() == psutil.STATUS_ZOMBIE
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
