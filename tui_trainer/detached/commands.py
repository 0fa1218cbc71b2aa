"""The shell side of detached runs: `--headless --detach`, `stop RUN`, and finding the run `attach` opens."""

from __future__ import annotations

import os
import shlex
import signal
import stat
import time
from pathlib import Path

from tui_trainer.engine.states import LIVE_STATES
from tui_trainer.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, UserError, report
from tui_trainer.launch import LaunchOptions
from tui_trainer.runs.folder import RECORD_FILE
from tui_trainer.runs.registry import RunInfo, find_run, owned_by_us
from tui_trainer.text import printable

STOP_TIMEOUT_S = 300.0


def _error(message: str, code: int = EXIT_BAD_INPUT) -> int:
    return report(message, code)


def start_detached(options: LaunchOptions) -> int:
    from tui_trainer.detached.launcher import launch_detached

    try:
        info = launch_detached(options, pause_on_fault=False)
    except UserError as error:
        return report(error)
    print(f"started run {printable(info.run_id)} in the background (pid {info.pid})")
    print(f"  watch and steer: {printable(run_command('attach', info.run_dir))}")
    print(f"  stop it:         {printable(run_command('stop', info.run_dir))}")
    return EXIT_OK


def run_command(verb: str, run_dir: str | Path) -> str:
    """The shell command that attaches to (or stops) the run in run_dir, quoted for a shell; the default
    checkpoint folder goes unsaid."""
    path = Path(run_dir)
    folder, default = path.parent, Path("checkpoints")
    same = folder == default or folder.resolve() == default.resolve()
    where = "" if same else f" --checkpoint-dir {shlex.quote(str(folder))}"
    return f"tui-trainer {verb} {shlex.quote(path.name)}{where}"


def _find(folder: str, run: str | None) -> RunInfo | int:
    """The run to act on: one of this user's own, whose socket (if it has one) is ours too."""
    info = find_run(folder, run)
    if info is None:
        if run is None:
            return _error(f"no live run of yours under {printable(folder)}; "
                          f"`tui-trainer runs --checkpoint-dir {printable(folder)}` lists them")
        return _error(f"no run {printable(repr(run))} under {printable(folder)} (RUN is a run id or a run folder)")
    if not owned_by_us(info):
        return _error(f"run {printable(info.run_id)} is not yours (its folder or run.json belongs to another "
                      "user, or is a link): attach and stop act only on your own runs")
    problem = _socket_problem(info)
    if problem:
        return _error(f"run {printable(info.run_id)}: {problem}", EXIT_FAILED)
    return info


def _socket_problem(info: RunInfo) -> str:
    try:
        status = os.lstat(info.socket_path)
    except FileNotFoundError:
        return ""  # no socket: the run says why (lost, finished, an app's run)
    except OSError as error:
        return f"cannot check its control socket: {error.strerror or error}"
    if not stat.S_ISSOCK(status.st_mode) or status.st_uid != os.getuid():
        return f"{info.socket_path} is not a socket of yours; nothing was sent to it"
    return ""


def is_tui_trainer_command(cmdline: list[str]) -> bool:
    """A process started as `tui-trainer ...` or `python [options] -m tui_trainer[.module] ...` (the app, the
    headless runner, a detached supervisor or engine, a torchrun rank of one)."""
    if not cmdline:
        return False
    if os.path.basename(cmdline[0]) == "tui-trainer":
        return True
    args = iter(cmdline[1:])
    for arg in args:
        if arg == "-m":
            module = next(args, "")
        elif arg.startswith("-m"):
            module = arg[2:]
        elif arg in ("-X", "-W"):
            next(args, None)
            continue
        elif arg.startswith("-") and arg != "-c":
            continue
        else:
            return arg != "-c" and os.path.basename(arg) == "tui-trainer"
        return module == "tui_trainer" or module.startswith("tui_trainer.")
    return False


def engine_problem(info: RunInfo) -> str:
    """Why process info.pid cannot be proven to be this run's own engine ("" when it is): it must be ours
    (uid), be a tui-trainer process, have started when run.json says its process started, and hold this run
    folder's record file open (a run holds it, and its lock, for its whole life)."""
    import psutil

    try:
        process = psutil.Process(info.pid)
        uid, cmdline, started = process.uids().real, process.cmdline(), process.create_time()
        held = {item.path for item in process.open_files()}
    except psutil.Error:
        return f"process {info.pid} is gone or cannot be inspected"
    if uid != os.getuid():
        return f"process {info.pid} belongs to another user"
    if not is_tui_trainer_command(cmdline):
        return f"process {info.pid} is not a tui-trainer process ({printable(' '.join(cmdline)[:120])})"
    if not info.process_started_at or abs(started - info.process_started_at) >= 2.0:
        return f"process {info.pid} is not the one that started the run (the number was reused)"
    record = Path(info.run_dir) / RECORD_FILE
    try:  # the folder and its record themselves, not links to another run's (whose engine does hold it)
        real = stat.S_ISDIR(os.lstat(info.run_dir).st_mode) and stat.S_ISREG(os.lstat(record).st_mode)
    except OSError:
        real = False
    if not real or os.path.realpath(record) not in held:
        return f"process {info.pid} does not hold the run folder {printable(info.run_dir)}"
    return ""


def _terminate(pid: int) -> None:
    """SIGTERM through a pidfd where there is one: the signal reaches the process checked, never a later one
    that got its number."""
    if hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal"):
        descriptor = os.pidfd_open(pid)
        try:
            signal.pidfd_send_signal(descriptor, signal.SIGTERM)
        finally:
            os.close(descriptor)
    else:
        os.kill(pid, signal.SIGTERM)


def ask_engine_to_stop(info: RunInfo) -> str:
    """SIGTERM (save and stop) to the run's engine once it is proven to be that run's; "" when sent, else why not."""
    problem = engine_problem(info)
    if problem:
        return problem
    try:
        _terminate(info.pid)
    except ProcessLookupError:
        return f"process {info.pid} has just ended"
    return ""


def attach_target(folder: str, run: str | None) -> str | int:
    """The run folder `attach` opens, or an exit code after printing why not."""
    info = _find(folder, run)
    if isinstance(info, int):
        return info
    if not info.attachable:
        return _error(f"run {printable(info.run_id)} has no control socket (an app's run); it is {info.state} "
                      f"in process {info.pid}")
    if info.state not in LIVE_STATES:
        detail = f" ({printable(info.exit_status)})" if info.exit_status else ""
        checkpoint = f"; last checkpoint: {printable(info.last_checkpoint)}" if info.last_checkpoint else ""
        return _error(f"run {printable(info.run_id)} is {info.state}{detail}{checkpoint}", EXIT_FAILED)
    return info.run_dir


def stop_run(folder: str, run: str) -> int:
    """Ask a live run to save and stop; wait until it has."""
    from tui_trainer.detached.client import RunClient, RunUnavailable
    from tui_trainer.engine.controls import Stop
    from tui_trainer.engine.events import RunFinished

    info = _find(folder, run)
    if isinstance(info, int):
        return info
    if info.state not in LIVE_STATES:
        return _error(f"run {printable(info.run_id)} is not running ({info.state})", EXIT_FAILED)
    if not info.attachable:
        # A run without a socket, in its own terminal: SIGTERM makes it save and stop, once its process is
        # proven to be that run's (a run.json is only data).
        problem = ask_engine_to_stop(info)
        if problem:
            return _error(f"run {printable(info.run_id)} was not signalled: {problem}", EXIT_FAILED)
        print(f"asked run {printable(info.run_id)} (pid {info.pid}) to save and stop")
        return EXIT_OK
    try:
        client = RunClient(info)
    except RunUnavailable as error:
        return _error(str(error), EXIT_FAILED)
    try:
        client.send(Stop(save=True, reason="tui-trainer stop"))
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for event in client.events():
            if isinstance(event, RunFinished):
                saved = f"; saved {printable(event.checkpoint)}" if event.checkpoint else ""
                print(f"run {printable(info.run_id)} {event.state} at step {event.step}{saved}")
                return EXIT_OK
            if time.monotonic() > deadline:
                break
    finally:
        client.close()
    return _error(f"run {printable(info.run_id)} did not confirm the stop; `tui-trainer runs` shows its state",
                  EXIT_FAILED)
