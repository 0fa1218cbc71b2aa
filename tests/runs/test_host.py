"""One host for every run: a run in the app's thread is hosted like the others (run.json, control socket), so
`tui-trainer runs` lists it and `tui-trainer stop` stops it; each way of starting a run names its hosting; and
the run's user errors come from one hierarchy with one set of exit codes."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tui_trainer.cli import main
from tui_trainer.errors import EXIT_BAD_INPUT, EXIT_FAILED, RunNotStarted, UserError, report, signal_exit
from tui_trainer.launch import LaunchOptions
from tui_trainer.presets import load_config
from tui_trainer.runs.hosting import EndedBy, Hosting, Reach, Where
from tui_trainer.runs.registry import list_runs, read_run_info

LONG_RUN = {"epochs": 100_000, "checkpoint.every_epochs": 0, "checkpoint.save_best": False, "device": "cpu"}


def wait_until(condition, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


@pytest.fixture
def in_thread_run(tmp_path):
    """A ThreadHandle (the app's --in-thread run) training in a thread, as the app's worker runs it."""
    from tui_trainer.ui.handle import ThreadHandle

    folder = tmp_path / "ck"
    session = ThreadHandle(load_config("iris-linear", {"checkpoint.dir": str(folder), **LONG_RUN}),
                         notify=lambda: None)
    thread = threading.Thread(target=session.run, name="trainer in-thread test", daemon=True)
    thread.start()
    try:
        yield folder, session, thread
    finally:
        session.stop("test over")
        thread.join(30)
        assert not thread.is_alive(), "the training thread did not end"


def running(folder: Path):
    live = [info for info in list_runs(folder) if info.state == "running"]
    return live[0] if live else None


def test_a_run_in_the_apps_thread_writes_run_json_and_is_listed(in_thread_run, capsys):
    folder, _, _ = in_thread_run
    info = wait_until(lambda: running(folder), "run.json to say running")
    assert info.pid == os.getpid() and info.attachable and not info.detached
    assert info.preset == "iris-linear" and info.run_id == Path(info.run_dir).name
    assert main(["runs", "--checkpoint-dir", str(folder)]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    fields = line.split("\t")
    assert fields[:2] == [info.run_id, "running"] and fields[7] == str(os.getpid())


def test_tui_trainer_stop_stops_a_run_in_the_apps_thread_and_leaves_the_app(in_thread_run, capsys):
    folder, session, thread = in_thread_run
    info = wait_until(lambda: running(folder), "run.json to say running")
    previous = signal.getsignal(signal.SIGTERM)
    assert main(["stop", info.run_id, "--checkpoint-dir", str(folder)]) == 0
    assert "stopped at step" in capsys.readouterr().out
    thread.join(30)
    assert session.result is not None and session.result.state == "stopped"
    assert read_run_info(info.run_dir).state == "stopped"
    assert (Path(info.run_dir) / "last.pt").is_file()
    assert not (Path(info.run_dir) / "control.sock").exists(), "the socket goes with the run"
    assert signal.getsignal(signal.SIGTERM) is previous, "a run in a thread leaves the process's signals alone"


@pytest.mark.parametrize(("options", "headless", "where", "ended_by", "reach", "processes"), [
    (LaunchOptions(in_thread=True), False, Where.THREAD, EndedBy.APP, Reach.QUEUE, 1),
    (LaunchOptions(), False, Where.PROCESS, EndedBy.APP, Reach.SOCKET, 1),
    (LaunchOptions(owned=True, owner_pid=4242), False, Where.PROCESS, EndedBy.APP, Reach.SOCKET, 1),
    (LaunchOptions(detach=True), False, Where.PROCESS, EndedBy.NOBODY, Reach.SOCKET, 1),
    (LaunchOptions(detach=True, processes=4), False, Where.TORCHRUN, EndedBy.NOBODY, Reach.SOCKET, 4),
    (LaunchOptions(), True, Where.PROCESS, EndedBy.SHELL, Reach.SOCKET, 1),
    (LaunchOptions(detach=True), True, Where.PROCESS, EndedBy.NOBODY, Reach.SOCKET, 1),
])
def test_each_way_to_start_a_run_names_where_who_ends_it_and_how_it_is_reached(options, headless, where,
                                                                                ended_by, reach, processes):
    hosting = options.hosting(headless=headless)
    assert (hosting.where, hosting.ended_by, hosting.reach, hosting.processes) == (where, ended_by, reach, processes)
    assert hosting.owned == (ended_by == EndedBy.APP and reach == Reach.SOCKET)
    if hosting.owned:
        assert hosting.owner_pid == (options.owner_pid or os.getpid())
    assert Hosting.from_dict(hosting.to_dict()) == hosting


@pytest.mark.parametrize("values", [
    (Where.THREAD, EndedBy.NOBODY, Reach.QUEUE, 1),
    (Where.THREAD, EndedBy.APP, Reach.SOCKET, 1),
    (Where.PROCESS, EndedBy.SHELL, Reach.QUEUE, 1),
    (Where.PROCESS, EndedBy.NOBODY, Reach.SOCKET, 3),
    (Where.TORCHRUN, EndedBy.NOBODY, Reach.SOCKET, 1),
])
def test_a_hosting_that_cannot_be_is_refused(values):
    with pytest.raises(ValueError):
        Hosting(*values)


def test_what_to_train_is_one_value_whatever_hosts_it():
    options = LaunchOptions(preset="iris-linear", overrides={"optimizer.lr": 0.5}, resume=None, trust_code=True,
                            override_sources={"optimizer.lr": "--lr"}, trusted_imports=["a.b:c"], detach=True)
    request = options.request
    assert request.to_dict() == type(request).from_dict(request.to_dict()).to_dict()
    assert request.config().optimizer.lr == 0.5
    assert LaunchOptions(preset="iris-linear", in_thread=True, overrides={"optimizer.lr": 0.5}).request.config() \
        == request.config(), "how a run is hosted does not change what it trains"


def error_examples():
    from tui_trainer.catalog.datasets import DatasetError
    from tui_trainer.catalog.models import ImportedModelError
    from tui_trainer.config import ConfigError, UntrustedCode
    from tui_trainer.detached.client import RunUnavailable
    from tui_trainer.detached.launcher import DetachError
    from tui_trainer.engine.checkpoints import CheckpointError
    from tui_trainer.runs.folder import RunFolderError

    return [
        (ConfigError("p.yaml", "optimizer.lr", "input should be greater than 0"), EXIT_BAD_INPUT),
        (UntrustedCode("ck.pt", [("model.import", "a.b:c")]), EXIT_BAD_INPUT),
        (RunFolderError("cannot create /x: Permission denied"), EXIT_BAD_INPUT),
        (CheckpointError("ck.pt", "not a checkpoint"), EXIT_BAD_INPUT),
        (DatasetError("MNIST needs torchvision"), EXIT_BAD_INPUT),
        (ImportedModelError("cannot import a.b"), EXIT_BAD_INPUT),
        (DetachError("the engine exited with status 1"), EXIT_FAILED),
        (RunUnavailable("no control socket"), EXIT_FAILED),
        (RunNotStarted("ended at once", 2), EXIT_BAD_INPUT),
    ]


@pytest.mark.parametrize(("error", "code"), error_examples(), ids=lambda value: type(value).__name__)
def test_every_user_error_is_one_line_with_its_exit_code(error, code, capsys):
    assert isinstance(error, UserError) and error.exit_code == code
    assert report(error) == code
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("tui-trainer: error: ") and "Traceback" not in line


def test_exit_codes_are_defined_once():
    from tui_trainer import cli, headless
    from tui_trainer.detached import commands

    for module in (cli, headless, commands):
        assert (module.EXIT_OK, module.EXIT_FAILED, module.EXIT_BAD_INPUT) == (0, 1, 2)
    assert signal_exit(signal.SIGTERM) == 128 + signal.SIGTERM


def test_run_states_are_one_definition():
    from tui_trainer.engine import events, states
    from tui_trainer.runs import folder as run_folder
    from tui_trainer.runs import registry as runinfo

    assert events.FINAL_STATES is states.FINAL_STATES and runinfo.LIVE_STATES is states.LIVE_STATES
    assert run_folder.ENDED_STATES is states.ENDED_STATES and runinfo.STATES is states.RECORD_STATES
    assert set(states.RECORD_STATES) == {state.value for state in states.RunState}
    assert states.RunState("lost").ended and states.RunState("paused").live and not states.RunState("failed").live
