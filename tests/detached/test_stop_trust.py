"""`stop`, `attach` and `runs` against run.json files that lie (issue 20, findings 3 and 7).

A run.json is data: `stop` signals a process only once it is proven to be that run's engine, `attach` with no
argument picks only the user's own runs, and `runs` lists any run.json (a malformed one as unreadable) and
acts on none.
"""

from __future__ import annotations

import contextlib
import io
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

from tui_trainer.cli import main
from tui_trainer.detached.commands import attach_target, is_tui_trainer_command, stop_run
from tui_trainer.runs.folder import RECORD_FILE
from tui_trainer.runs.registry import (
    RUN_FILE,
    RUN_FILE_MAX_BYTES,
    UNREADABLE,
    RunInfo,
    find_run,
    list_runs,
    load_run_info,
    write_run_info,
)

AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="files of another user need root to make")
NOBODY = 65534


@pytest.fixture
def bystander():
    """A process of the user's that has nothing to do with any run (started as `tui-trainer` by name too:
    a command line is easy to look like)."""
    processes = []

    def start(argv0: str = "sleep") -> psutil.Process:
        process = subprocess.Popen(["bash", "-c", f"exec -a {argv0} sleep 60"])
        processes.append(process)
        deadline = time.monotonic() + 5
        while psutil.Process(process.pid).cmdline()[:1] != [argv0] and time.monotonic() < deadline:
            time.sleep(0.01)
        return psutil.Process(process.pid)

    yield start
    for process in processes:
        process.kill()
        process.wait()


def run_folder(root: Path, name: str = "run-a") -> Path:
    folder = root / name
    folder.mkdir(mode=0o700, parents=True)
    return folder


def plant_run_json(folder: Path, process: psutil.Process | None = None, **fields) -> Path:
    record = {"run_id": folder.name, "run_dir": str(folder), "state": "running", "attachable": False,
              "pid": process.pid if process else 0,
              "process_started_at": process.create_time() if process else 0.0, "started_at": time.time(),
              **fields}
    (folder / RUN_FILE).write_text(json.dumps(record))
    return folder / RUN_FILE


def hold_run_folder(folder: Path) -> subprocess.Popen:
    """A stand-in engine: a `tui-trainer` process of ours holding folder's record open and locked, as a run does
    for its life, with a run.json naming it; SIGTERM makes it exit 42."""
    (folder / RECORD_FILE).write_text("{}")
    engine = subprocess.Popen(
        ["bash", "-c", f'exec -a tui-trainer {sys.executable} -c "$0" "$1"',
         "import fcntl, os, signal, sys, time\n"
         "fd = os.open(sys.argv[1], os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX)\n"
         "signal.signal(signal.SIGTERM, lambda *a: os._exit(42)); print('ready', flush=True); time.sleep(60)",
         str(folder / RECORD_FILE)], stdout=subprocess.PIPE, text=True)
    assert engine.stdout.readline().strip() == "ready"
    plant_run_json(folder, psutil.Process(engine.pid))
    return engine


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exit_:
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


# ---------------------------------------------------------------- stop: a run.json naming another process


@pytest.mark.parametrize("argv0", ["sleep", "tui-trainer"])
def test_stop_never_signals_a_process_a_run_json_names(tmp_path, bystander, argv0):
    process = bystander(argv0)
    plant_run_json(run_folder(tmp_path), process)
    code, _, err = cli("stop", "run-a", "--checkpoint-dir", str(tmp_path))
    time.sleep(0.2)
    assert process.is_running() and process.status() != psutil.STATUS_ZOMBIE, "the bystander was signalled"
    assert code == 1 and "not signalled" in err and len(err.strip().splitlines()) == 1, err


def test_stop_refuses_a_run_json_whose_start_time_or_pid_is_wrong(tmp_path, bystander):
    process = bystander("tui-trainer")
    for name, fields in {"old": {"process_started_at": process.create_time() - 3600},
                         "unset": {"process_started_at": 0.0}}.items():
        plant_run_json(run_folder(tmp_path, name), process, **fields)
        assert stop_run(str(tmp_path), name) != 0
    assert process.is_running()


@AS_ROOT
def test_stop_and_attach_refuse_another_users_run(tmp_path, bystander):
    process = bystander("tui-trainer")
    theirs = run_folder(tmp_path, "theirs")
    run_file = plant_run_json(theirs, process, attachable=True)
    os.chown(run_file, NOBODY, NOBODY)
    os.chown(theirs, NOBODY, NOBODY)
    code, _, err = cli("stop", "theirs", "--checkpoint-dir", str(tmp_path))
    assert code == 2 and "not yours" in err
    assert attach_target(str(tmp_path), "theirs") == 2
    assert process.is_running()


def test_stop_refuses_a_run_folder_that_is_a_link(tmp_path, bystander):
    process = bystander("tui-trainer")
    elsewhere = run_folder(tmp_path / "elsewhere", "real")
    plant_run_json(elsewhere, process)
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "link").symlink_to(elsewhere, target_is_directory=True)
    assert stop_run(str(tmp_path / "ck"), "link") == 2
    assert process.is_running()


def test_stop_signals_the_process_that_holds_the_run_folder(tmp_path):
    """The proof that holds: a tui-trainer process of ours, started when run.json says, holding the run
    folder's record (and lock) open; it gets the SIGTERM that makes a run save and stop."""
    folder = run_folder(tmp_path)
    engine = hold_run_folder(folder)
    try:
        code, out, err = cli("stop", "run-a", "--checkpoint-dir", str(tmp_path))
        assert code == 0 and "asked run run-a" in out, err
        assert engine.wait(10) == 42
    finally:
        engine.kill()
        engine.wait()


@pytest.mark.parametrize("cmdline, expected", [
    (["/venv/bin/python", "/venv/bin/tui-trainer", "--headless"], True),
    (["tui-trainer"], True),
    (["python3", "-P", "-m", "tui_trainer.detached.launcher", "engine"], True),
    (["python", "-u", "-mtui_trainer", "--headless"], True),
    (["python", "-X", "dev", "-m", "tui_trainer"], True),
    (["python", "-m", "tui_trainer_evil"], False),
    (["python", "-c", "tui_trainer"], False),
    (["vim", "tui_trainer/cli.py"], False),
    (["python", "tui_trainer/cli.py"], False),
    (["sleep", "60", "tui-trainer"], False),
    (["python", "-m", "pytest", "-k", "tui_trainer"], False),
    ([], False),
])
def test_what_counts_as_a_tui_trainer_process(cmdline, expected):
    assert is_tui_trainer_command(cmdline) is expected


# ---------------------------------------------------------------- attach: only the user's own runs


@AS_ROOT
def test_attach_without_a_run_picks_only_the_users_own(tmp_path, bystander):
    process = bystander("tui-trainer")
    theirs = run_folder(tmp_path, "theirs")
    plant_run_json(theirs, process, attachable=True, started_at=time.time() + 100)  # the newest
    os.chown(theirs / RUN_FILE, NOBODY, NOBODY)
    os.chown(theirs, NOBODY, NOBODY)
    assert find_run(tmp_path, None) is None
    assert attach_target(str(tmp_path), None) == 2
    mine = run_folder(tmp_path, "mine")
    plant_run_json(mine, process, attachable=True)
    assert find_run(tmp_path, None).run_dir == str(mine)
    assert {info.run_id for info in list_runs(tmp_path)} == {"theirs", "mine"}, "runs lists others' runs"


@AS_ROOT
def test_attach_refuses_a_socket_that_is_not_the_users(tmp_path, bystander):
    process = bystander("tui-trainer")
    folder = run_folder(tmp_path)
    plant_run_json(folder, process, attachable=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(folder / "control.sock"))
    try:
        os.chown(folder / "control.sock", NOBODY, NOBODY)
        assert attach_target(str(tmp_path), "run-a") == 1
        assert attach_target(str(tmp_path), None) == 1
        assert stop_run(str(tmp_path), "run-a") == 1
    finally:
        server.close()


def test_attach_refuses_a_socket_path_that_is_a_file_or_a_link(tmp_path, bystander):
    process = bystander("tui-trainer")
    for name, make in {"file": lambda path: path.write_text("x"),
                       "link": lambda path: path.symlink_to("/run/some-other.sock")}.items():
        folder = run_folder(tmp_path, name)
        plant_run_json(folder, process, attachable=True)
        make(folder / "control.sock")
        assert attach_target(str(tmp_path), name) == 1


# ---------------------------------------------------------------- runs: malformed run.json files


MALFORMED = {
    "pid-string": {"pid": "123"},
    "pid-list": {"pid": [1]},
    "pid-bool": {"pid": True},
    "pid-negative": {"pid": -1},
    "pid-huge": {"pid": 2**70},
    "state-number": {"state": 5},
    "state-unknown": {"state": "exploded"},
    "started-nan": {"process_started_at": float("nan")},
    "epoch-float": {"epoch": 1.5},
    "best-string": {"best": "0.1"},
    "attachable-string": {"attachable": "yes"},
}
RAW = {
    "not-a-dict": b"[1, 2, 3]",
    "not-json": b"{run_id: ",
    "not-utf8": b'{"run_id": "\xff\xfe"}',
    "empty": b"",
    "huge": b'{"run_id": "x", "reason": "' + b"a" * (RUN_FILE_MAX_BYTES + 10) + b'"}',
    "deep": b"[" * 100_000 + b"]" * 100_000,
}


def make_malformed(root: Path) -> set[str]:
    names = set()
    for name, fields in MALFORMED.items():
        folder = run_folder(root, name)
        plant_run_json(folder, **fields)
        names.add(name)
    for name, data in RAW.items():
        (run_folder(root, name) / RUN_FILE).write_bytes(data)
        names.add(name)
    (run_folder(root, "dev-zero") / RUN_FILE).symlink_to("/dev/zero")
    (run_folder(root, "a-folder") / RUN_FILE).mkdir()
    os.mkfifo(run_folder(root, "a-fifo") / RUN_FILE)
    return names | {"dev-zero", "a-folder", "a-fifo"}


def test_runs_lists_malformed_run_files_as_unreadable_never_a_traceback(tmp_path):
    bad = make_malformed(tmp_path)
    plant_run_json(run_folder(tmp_path, "good"), state="finished")
    listed = {info.run_id: info for info in list_runs(tmp_path)}
    assert set(listed) == bad | {"good"}
    assert listed["good"].state == "finished"
    for name in bad:
        assert listed[name].state == UNREADABLE, name
        assert "\n" not in listed[name].reason and str(tmp_path / name) in listed[name].reason
    code, out, err = cli("runs", "--checkpoint-dir", str(tmp_path), "--json")
    assert code == 0 and "Traceback" not in err, err
    states = {entry["run_id"]: entry["state"] for entry in map(json.loads, out.splitlines())}
    assert states == {**dict.fromkeys(bad, UNREADABLE), "good": "finished"}
    code, out, err = cli("runs", "--checkpoint-dir", str(tmp_path))
    assert code == 0 and "Traceback" not in out + err


def test_stop_and_attach_answer_a_malformed_run_file_in_one_line(tmp_path):
    for name in make_malformed(tmp_path):
        for command in ("stop", "attach"):
            code, _, err = cli(command, name, "--checkpoint-dir", str(tmp_path))
            assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (name, err)


def test_the_run_dir_a_run_file_names_is_never_used(tmp_path, bystander):
    process = bystander("tui-trainer")
    elsewhere = run_folder(tmp_path / "elsewhere", "victim")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(elsewhere / "control.sock"))
    try:
        folder = run_folder(tmp_path / "ck")
        plant_run_json(folder, process, attachable=True, run_dir=str(elsewhere))
        info = load_run_info(folder)
        assert info.run_dir == str(folder) and info.socket_path == folder / "control.sock"
        assert attach_target(str(tmp_path / "ck"), "run-a") == str(folder)
        assert [info.run_dir for info in list_runs(tmp_path / "ck")] == [str(folder)]
    finally:
        server.close()


def test_runs_does_not_follow_links_to_folders(tmp_path):
    elsewhere = run_folder(tmp_path / "elsewhere", "real")
    plant_run_json(elsewhere, state="finished")
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "link").symlink_to(elsewhere, target_is_directory=True)
    assert list_runs(tmp_path / "ck") == []


# ---------------------------------------------------------------- run.json writes


def test_run_json_is_written_without_following_a_planted_temporary_name(tmp_path):
    folder = run_folder(tmp_path)
    target = tmp_path / "target"
    target.write_text("keep")
    for pid in (os.getpid(), 12345):
        (folder / f".{RUN_FILE}.{pid}.tmp").symlink_to(target)
    info = RunInfo(run_id="run-a", run_dir=str(folder), state="running", pid=os.getpid())
    write_run_info(info)
    assert target.read_text() == "keep"
    assert load_run_info(folder).pid == os.getpid()
    assert oct(os.stat(folder / RUN_FILE).st_mode & 0o777) == "0o600"


def test_a_failed_engine_does_not_overwrite_a_live_runs_run_json(tmp_path, bystander):
    process = bystander("tui-trainer")
    folder = run_folder(tmp_path)
    plant_run_json(folder, process)
    write_run_info(RunInfo(run_id="run-a", run_dir=str(folder), state="failed", pid=os.getpid(),
                           reason="its folder is in use"))
    assert load_run_info(folder).pid == process.pid and load_run_info(folder).state == "running"
    os.kill(process.pid, signal.SIGKILL)
    process.wait(5)
    write_run_info(RunInfo(run_id="run-a", run_dir=str(folder), state="failed", pid=os.getpid()))
    assert load_run_info(folder).state == "failed", "a dead run's run.json is for the next run to write"


def test_a_stale_socket_is_removed_only_when_it_is_ours_and_a_socket(tmp_path):
    import socket as sockets

    from tui_trainer.detached.client import clean_stale_socket
    from tui_trainer.runs.registry import RunInfo

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    info = RunInfo(run_id="run", run_dir=str(run_dir), state="finished")
    (run_dir / "control.sock").write_text("a file of someone's, not a socket")
    assert not clean_stale_socket(info) and (run_dir / "control.sock").exists()
    (run_dir / "control.sock").unlink()
    victim = tmp_path / "victim"
    victim.write_text("mine")
    (run_dir / "control.sock").symlink_to(victim)
    assert not clean_stale_socket(info) and victim.exists()
    (run_dir / "control.sock").unlink()
    server = sockets.socket(sockets.AF_UNIX)
    server.bind(str(run_dir / "control.sock"))
    server.close()
    assert clean_stale_socket(info) and not (run_dir / "control.sock").exists()


@pytest.mark.parametrize("planted", ["record", "folder"])
def test_stop_refuses_a_folder_whose_record_is_a_link_to_a_live_runs(tmp_path, planted):
    """A copy of a live run's run.json, in a folder whose record (or which itself) is a link to that run's: the
    engine holds the record the link resolves to, but this folder is not its run folder."""
    folder = run_folder(tmp_path / "real")
    engine = hold_run_folder(folder)
    try:
        plant = tmp_path / "plant"
        plant.mkdir()
        if planted == "record":
            decoy = run_folder(plant, "decoy")
            (decoy / RECORD_FILE).symlink_to(folder / RECORD_FILE)
            plant_run_json(decoy, psutil.Process(engine.pid))
            code, _, err = cli("stop", "decoy", "--checkpoint-dir", str(plant))
        else:
            (plant / "decoy").symlink_to(folder)
            code, _, err = cli("stop", str(plant / "decoy"), "--checkpoint-dir", str(plant))
        time.sleep(0.2)
        assert engine.poll() is None, "the other run's engine was signalled"
        assert code != 0 and len(err.strip().splitlines()) == 1, err
    finally:
        engine.kill()
        engine.wait()
