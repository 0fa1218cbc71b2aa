"""The warm engine: started before the user starts a run, it holds nothing and trains nothing until its app
hands it a run, then trains exactly that run as a cold-started engine would; it goes when its app goes, and
only its app can tell it anything."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from tui_trainer.detached.client import RunClient
from tui_trainer.detached.launcher import Launch, start_engine
from tui_trainer.detached.warm_engine import WarmEngine, available
from tui_trainer.engine.controls import Resume
from tui_trainer.runs.hosting import Hosting
from tui_trainer.runs.registry import RunInfo, read_run_info
from tui_trainer.runs.request import RunRequest

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not available(), reason="needs SO_PASSCRED (Linux)")]

WAIT_S = 120.0


def wait_until(condition, what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def gone(pid: int) -> bool:
    """Exited (a zombie nobody has reaped yet counts: it runs nothing and holds nothing)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def engine_of(supervisor_pid: int) -> psutil.Process:
    """The warm supervisor's engine child, once it is started."""
    found: list[psutil.Process] = []

    def started() -> bool:
        found[:] = psutil.Process(supervisor_pid).children()
        return bool(found)

    wait_until(started, "the warm engine process")
    return found[0]


def settled(process: psutil.Process, quiet_s: float = 0.5) -> None:
    """Wait until the process has stopped using CPU (a warm engine done importing waits on its channel)."""
    def quiet() -> bool:
        before = sum(process.cpu_times()[:2])
        time.sleep(quiet_s)
        return sum(process.cpu_times()[:2]) - before < 0.02

    wait_until(quiet, "the warm engine to finish importing")


@pytest.fixture
def warm(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    engine = WarmEngine.start()
    yield engine
    engine.close()
    with contextlib.suppress(psutil.NoSuchProcess):
        for process in psutil.Process(engine.supervisor.pid).children(recursive=True):
            process.kill()


def request(tmp_path: Path, **overrides) -> RunRequest:
    return RunRequest(preset="iris-linear", overrides={"checkpoint.dir": str(tmp_path / "ck"), **overrides})


def start(warm: WarmEngine, tmp_path: Path, **overrides) -> RunInfo:
    """Start a detached run (waiting paused, so that even a run of a few milliseconds is seen ready)."""
    return start_engine(Launch(request(tmp_path, **overrides), Hosting.detached(), start_paused=True), warm=warm)


def train_to_the_end(info: RunInfo) -> str:
    client = RunClient(info)
    try:
        client.send(Resume())
        wait_until(lambda: read_run_info(info.run_dir).state in ("finished", "failed", "lost"), "the run to end")
    finally:
        client.close()
    return read_run_info(info.run_dir).state


def test_a_warm_engine_trains_exactly_the_run_it_is_handed_in_the_process_that_waited(warm, tmp_path):
    engine = engine_of(warm.supervisor.pid)
    settled(engine)
    assert not (tmp_path / "ck").exists(), "no run folder before the run is handed over"
    info = start(warm, tmp_path, epochs=3, **{"optimizer.lr": 0.0421, "model.name": "mlp", "threads": 1})
    assert info.pid == engine.pid, "the run trains in the engine that was warm, not a new one"
    assert train_to_the_end(info) == "finished"
    config = yaml.safe_load((Path(info.run_dir) / "config.yaml").read_text())
    assert (config["epochs"], config["optimizer"]["lr"], config["model"]["name"]) == (3, 0.0421, "mlp")
    threads = read_run_info(info.run_dir).threads
    assert (threads["intra_op"], threads["set_by"]) == (1, "preset"), "the run's host still sizes torch's threads"
    assert (Path(info.run_dir) / "last.pt").exists()
    wait_until(lambda: gone(warm.supervisor.pid) and gone(engine.pid), "the run's processes to end")


def test_a_run_handed_over_while_the_engine_still_imports_starts(warm, tmp_path):
    info = start(warm, tmp_path, epochs=1)
    assert info.pid == engine_of(warm.supervisor.pid).pid
    assert train_to_the_end(info) == "finished"


def test_a_warm_engine_holds_no_file_and_no_socket_anyone_could_reach(warm, tmp_path):
    engine = engine_of(warm.supervisor.pid)
    settled(engine)
    for process in (psutil.Process(warm.supervisor.pid), engine):
        assert [file.path for file in process.open_files()] == []
        assert all(not connection.laddr and not connection.raddr for connection in process.net_connections("all")), \
            "only the unnamed socket pair of its channel"
    assert not (tmp_path / "ck").exists()


def test_a_message_from_any_process_but_its_app_is_ignored(warm, tmp_path):
    engine = engine_of(warm.supervisor.pid)
    planted = tmp_path / "planted"
    log = tmp_path / "planted.log"
    fake = Launch(request(tmp_path, epochs=1), Hosting.detached()).to_dict()
    message = json.dumps({"run_dir": str(planted / "run"), "launch": fake, "env": {}})
    channel = warm._channel.fileno()
    # Another process holding the app's end (as a child of the app that kept it would): its message carries its
    # own process id.
    impostor = subprocess.run(
        [sys.executable, "-c", "import os, socket, sys\n"
         f"channel = socket.socket(fileno={channel})\n"
         f"log = os.open({str(log)!r}, os.O_WRONLY | os.O_CREAT, 0o600)\n"
         "socket.send_fds(channel, [sys.argv[1].encode()], [log, log])\n"
         "print(os.getpid())\n", message],
        pass_fds=(channel,), capture_output=True, text=True, timeout=60)
    assert impostor.returncode == 0, impostor.stderr
    settled(engine)
    assert not planted.exists() and log.read_bytes() == b"", "nothing trained for the impostor"
    assert not gone(warm.supervisor.pid) and not gone(engine.pid), "still waiting for its app"
    logged = "".join(path.read_text() for path in (tmp_path / "state").rglob("*.log"))
    assert f"ignored a message from another process (process {impostor.stdout.strip()};" in logged
    info = start(warm, tmp_path, epochs=1)
    assert info.pid == engine.pid and Path(info.run_dir).parent == tmp_path / "ck"
    assert train_to_the_end(info) == "finished"
    assert not planted.exists()


def test_a_malformed_message_from_its_app_starts_nothing(warm, tmp_path):
    engine = engine_of(warm.supervisor.pid)
    socket.send_fds(warm._channel, [b"not json"], [])
    settled(engine)
    assert not gone(engine.pid)
    warm.close()
    assert gone(warm.supervisor.pid) and not (tmp_path / "ck").exists()


def test_closing_an_idle_warm_engine_leaves_no_process_and_no_folder(warm, tmp_path):
    engine = engine_of(warm.supervisor.pid)
    settled(engine)
    warm.close()
    assert gone(warm.supervisor.pid)
    wait_until(lambda: gone(engine.pid), "the engine to end")
    assert sorted(path.name for path in tmp_path.iterdir()) == [], "nothing written in the current folder"
    assert warm.hand_over(tmp_path / "ck" / "run", Launch(request(tmp_path), Hosting.detached()), None, -1) is None


STAND_IN_APP = """
import sys, time
from tui_trainer.detached.warm_engine import WarmEngine
warm = WarmEngine.start()
print(warm.supervisor.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("when", ["importing", "idle"])
def test_an_app_killed_takes_its_warm_engine_with_it(tmp_path, when):
    app = subprocess.Popen([sys.executable, "-c", STAND_IN_APP], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        supervisor = psutil.Process(int(app.stdout.readline()))
        engine = engine_of(supervisor.pid)
        if when == "idle":
            settled(engine)
        os.kill(app.pid, signal.SIGKILL)
        app.wait(30)
        wait_until(lambda: gone(supervisor.pid) and gone(engine.pid), "the warm engine to go with its app",
                   timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(app.pid, signal.SIGKILL)
    assert list(tmp_path.iterdir()) == []
