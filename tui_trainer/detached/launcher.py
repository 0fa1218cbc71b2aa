"""Starting a run in processes of its own, and the two processes it consists of.

`launch_detached` starts a supervisor in a new session (so it survives SIGHUP and the app's exit). The
supervisor starts the engine (or torchrun's ranks) and waits for it: if the engine dies without saying it
finished (SIGKILL, a crash), the supervisor marks the run lost in run.json with the exit status and removes its
socket. The engine hosts the run like any other (tui_trainer.runs.host).

A run that never starts leaves nothing behind: its engine writes no run.json for it, says why on the last lines
of its log (one line for people, one the launcher reads back as the same error, so the app marks the same field
a run in its own thread would), and the launcher removes the folder it made for it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui_trainer.engine.states import ENDED_STATES, FINAL_STATES
from tui_trainer.errors import EXIT_FAILED, RunNotStarted, UserError
from tui_trainer.launch import LaunchOptions
from tui_trainer.run_files import ENGINE_LOG, LAUNCH_FILE
from tui_trainer.runs.hosting import Hosting
from tui_trainer.runs.registry import SOCKET_FILE, RunInfo, process_alive, read_run_info, write_run_info
from tui_trainer.runs.request import RunRequest
from tui_trainer.text import printable

if TYPE_CHECKING:
    from tui_trainer.detached.warm_engine import WarmEngine

READY_TIMEOUT_S = 180.0
READY_POLL_S = 0.02
"""How often the launcher reads run.json while the engine starts (a warm engine is ready in a few tenths of a
second: each poll's wait is part of what the user waits for)."""
START_ERROR_MARK = "tui-trainer: start-error: "
"""The log line that carries a setup error back to the launcher (JSON after the mark)."""
LOG_TAIL_BYTES = 64 * 1024
UNSTARTED_WAIT_S = 10.0
"""How long the launcher waits for the processes of a run that did not start to end, before it removes the
folder it made for it."""


class DetachError(RunNotStarted):
    """The run in its own process did not start; the message is the engine's own one-line reason."""


@dataclass(frozen=True)
class Launch:
    """Everything an engine process is told: what to train, how it is hosted, how it begins."""

    request: RunRequest
    hosting: Hosting
    start_paused: bool = False
    pause_on_fault: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"request": self.request.to_dict(), "hosting": self.hosting.to_dict(),
                "start_paused": self.start_paused, "pause_on_fault": self.pause_on_fault}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Launch:
        return cls(RunRequest.from_dict(data["request"]), Hosting.from_dict(data["hosting"]),
                   bool(data.get("start_paused")), bool(data.get("pause_on_fault")))


def _python(module: str) -> list[str]:
    """`python -m module` that never imports from the current folder: -P keeps it off sys.path (a psutil.py or
    a torch/ there would otherwise run inside the engine). PYTHONSAFEPATH in ENGINE_ENV does the same for the
    processes torchrun starts."""
    return [sys.executable, "-P", "-m", module]


ENGINE_ENV = {"PYTHONSAFEPATH": "1"}


def _write_launch_file(run_dir: Path, launch: Launch) -> Path:
    """The launch (the whole config, paths, overrides) goes in a file only the user can read, not on the command
    line, which every user of the machine sees in `ps`."""
    path = run_dir / LAUNCH_FILE
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        os.fchmod(file.fileno(), 0o600)
        json.dump(launch.to_dict(), file)
    return path


def _supervisor_command(run_dir: Path, launch_file: Path) -> list[str]:
    return [*_python("tui_trainer.detached.launcher"), "supervise", "--run-dir", str(run_dir),
            "--launch-file", str(launch_file)]


def read_launch(path: Path) -> Launch:
    with path.open(encoding="utf-8") as file:
        return Launch.from_dict(json.load(file))


def launch_detached(options: LaunchOptions, pause_on_fault: bool = True,
                    timeout_s: float = READY_TIMEOUT_S) -> RunInfo:
    """Start the run the options ask for in processes of its own: owned by this app (options.owned), else
    detached; return once it trains (an owned one: once it is set up and waits for its app)."""
    hosting = Hosting.engine_of_app(options.owner_pid) if options.owned else Hosting.detached(options.processes)
    launch = Launch(options.request, hosting, start_paused=options.start_paused, pause_on_fault=pause_on_fault)
    return start_engine(launch, timeout_s)


def start_engine(launch: Launch, timeout_s: float = READY_TIMEOUT_S, warm: WarmEngine | None = None) -> RunInfo:
    """Validate and check what this machine can before anything is made (ConfigError, CheckpointError ...
    raised here), then make the run folder and start the supervisor, or hand the run to `warm`, an engine
    started beforehand (see detached.warm_engine; a cold start when it cannot take it). A run that does not
    start raises the engine's own error (a ConfigError naming its field, say) or DetachError, and leaves no
    folder it made."""
    from tui_trainer.preflight import check_run
    from tui_trainer.runs.folder import claim_run_folder

    config, _ = launch.request.resolve()
    check_run(config, probe_devices=False)  # torch is the engine's to import, unless this process has it already
    with claim_run_folder(config, launch.request.resume) as folder:  # made (or locked) for this run alone
        run_dir = folder.path
        launched_at = time.time()
        made_log = not os.path.lexists(run_dir / ENGINE_LOG)
        log_descriptor = os.open(run_dir / ENGINE_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW,
                                 0o600)
        with os.fdopen(log_descriptor, "ab") as log:
            # The supervisor inherits the folder's lock (or is handed it) and holds it for the run's life.
            supervisor = warm.hand_over(run_dir, launch, folder, log.fileno()) if warm is not None else None
            if supervisor is None:
                supervisor = subprocess.Popen(
                    _supervisor_command(run_dir, _write_launch_file(run_dir, launch)), stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                    env={**os.environ, **ENGINE_ENV, **folder.child_env()}, pass_fds=folder.child_fds(),
                )
        # An owned engine waits for its app before the first step: set up (run.json says starting) is ready.
        ready = ("starting", "running", "paused") if launch.hosting.owned else ("running", "paused")
        try:
            return wait_until_ready(run_dir, supervisor, timeout_s, since=launched_at, ready_states=ready)
        except UserError:
            if _never_started(run_dir, launched_at):
                _remove_unstarted(run_dir, supervisor, made_log=made_log and folder.created)
            raise


def _never_started(run_dir: Path, since: float) -> bool:
    info = read_run_info(run_dir)
    return info is None or info.updated_at < since


def _remove_unstarted(run_dir: Path, supervisor: subprocess.Popen, made_log: bool) -> None:
    """Remove what this launch wrote for a run that never started, once its processes have ended (the folder
    itself goes when the launcher lets go of it, if nothing else is left in it: see RunFolder.release)."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        supervisor.wait(timeout=UNSTARTED_WAIT_S)
    if supervisor.poll() is None:
        return  # still starting after all: leave it its files
    for name, ours in ((LAUNCH_FILE, True), (ENGINE_LOG, made_log)):
        if ours:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(run_dir / name)  # unlink never follows a link


def wait_until_ready(run_dir: Path, supervisor: subprocess.Popen, timeout_s: float, since: float = 0.0,
                     ready_states: tuple[str, ...] = ("running", "paused")) -> RunInfo:
    """Wait for the engine to train. A run.json written before `since` is an earlier run's in the same folder
    (resuming from a run's own last.pt continues in its folder) and says nothing about this one."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = read_run_info(run_dir)
        if info is not None and info.updated_at < since:
            info = None
        if info is not None and info.state in ready_states and (run_dir / SOCKET_FILE).exists():
            return info
        if info is not None and info.state in ENDED_STATES:
            raise DetachError(f"run {run_dir.name} ended at once ({info.state}): {info.reason or _last_line(run_dir)}")
        if supervisor.poll() is not None:
            raise start_error(run_dir) or DetachError(
                _last_line(run_dir) or f"the engine exited with status {supervisor.returncode}")
        time.sleep(READY_POLL_S)
    raise DetachError(f"run {run_dir.name} did not start within {timeout_s:.0f} s; see {run_dir / ENGINE_LOG}")


def _log_tail(run_dir: Path) -> list[str]:
    """The engine log's last lines, read from its tail only."""
    try:
        with (run_dir / ENGINE_LOG).open("rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - LOG_TAIL_BYTES))
            return log.read(LOG_TAIL_BYTES).decode(errors="replace").strip().splitlines()
    except OSError:
        return []


def _last_line(run_dir: Path) -> str:
    """The engine log's last line (its one-line reason)."""
    lines = [line for line in _log_tail(run_dir) if not line.startswith(START_ERROR_MARK)]
    return lines[-1].removeprefix("tui-trainer: error: ") if lines else ""


def report_start_error(error: UserError) -> None:
    """The engine's side: why the run did not start, for the launcher (a JSON line) and for people reading the
    log (the one-line message, last)."""
    record: dict[str, Any] = {"kind": "other", "message": str(error), "exit_code": error.exit_code}
    from tui_trainer.catalog.datasets import DatasetError
    from tui_trainer.config import ConfigError

    if isinstance(error, ConfigError):
        record.update(kind="config", source=error.source, path=error.path, message=error.message)
    elif isinstance(error, DatasetError):
        record["kind"] = "dataset"
    print(START_ERROR_MARK + json.dumps(record), file=sys.stderr, flush=True)
    print(f"tui-trainer: error: {printable(error)}", file=sys.stderr, flush=True)


def start_error(run_dir: Path) -> UserError | None:
    """The setup error the engine reported (report_start_error), as the same kind of error; None without one."""
    from tui_trainer.catalog.datasets import DatasetError
    from tui_trainer.config import ConfigError

    marked = [line for line in _log_tail(run_dir) if line.startswith(START_ERROR_MARK)]
    if not marked:
        return None
    try:
        record = json.loads(marked[-1][len(START_ERROR_MARK):])
    except ValueError:
        return None
    if not isinstance(record, dict) or not all(isinstance(value, (str, int)) for value in record.values()):
        return None
    message = str(record.get("message", ""))
    if record.get("kind") == "config":
        return ConfigError(str(record.get("source", "")), str(record.get("path", "")), message)
    if record.get("kind") == "dataset":
        return DatasetError(message)
    code = record.get("exit_code")
    return DetachError(message, code if isinstance(code, int) and 0 < code < 256 else EXIT_FAILED)


def free_port() -> int:
    """A TCP port free on this machine now (for torchrun's rendezvous)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-returncode).name}"
        return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


def supervise(run_dir: Path, engine_command: list[str]) -> int:
    """Run the engine as a child; record how it ended if it could not say so itself."""
    ignore_hang_up()
    return watch_engine(run_dir, subprocess.Popen(engine_command, stdin=subprocess.DEVNULL))


def ignore_hang_up() -> None:
    """The supervisor and its engine outlive the terminal that started them (the engine inherits this)."""
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)


def watch_engine(run_dir: Path, engine: subprocess.Popen) -> int:
    """Wait for the engine (the supervisor's child) to end, passing on SIGTERM and SIGINT; record how it ended
    if it could not say so itself."""

    def forward(signum: int, frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            engine.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    returncode = engine.wait()
    info = read_run_info(run_dir)
    if info is not None and info.pid != engine.pid and process_alive(info.pid, info.process_started_at):
        # The folder already belongs to a newer engine (its own last.pt resumed in place): leave it alone.
        return 0 if returncode == 0 else 1
    if returncode < 0:
        # Killed: it could not remove its socket. An engine that ended by itself removed its own, and the
        # path may already be a newer engine's (resuming a run's last.pt continues in its folder). Removed
        # before run.json says lost, so a lost run is never seen with a socket.
        with contextlib.suppress(FileNotFoundError):
            (run_dir / SOCKET_FILE).unlink()
    if info is not None and info.state not in FINAL_STATES:
        info.state = "lost"
        info.exit_status = describe_exit(returncode)
        info.reason = f"the engine process {info.exit_status}"
        write_run_info(info)
    return 0 if returncode == 0 else 1


def serve(run_dir: Path, launch: Launch) -> int:
    """The engine: host the run in the folder made for it (each torchrun rank runs this; rank 0 serves the
    control socket). A run that cannot be set up writes no run.json: it says why (report_start_error)."""
    from tui_trainer.logs import get_logger, setup_file_logging
    from tui_trainer.runs.host import RunHost

    setup_file_logging()
    try:
        host = RunHost(launch.request.config(), launch.hosting, resume_from=launch.request.resume, run_dir=run_dir,
                       start_paused=launch.start_paused, pause_on_fault=launch.pause_on_fault)
        result = host.run()
    except UserError as error:
        report_start_error(error)
        return error.exit_code
    except Exception as error:  # a fault of ours while setting up: one line for the launcher, the traceback logged
        get_logger("engine").exception("the run could not be set up")
        traceback.print_exc()  # into the engine log, above the one-line reason
        report_start_error(DetachError(f"{type(error).__name__}: {error}"))
        return EXIT_FAILED
    return host.exit_code(result)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    parser = argparse.ArgumentParser(prog="tui_trainer.detached.launcher")
    parser.add_argument("role", choices=["supervise", "engine"])
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--launch-file", required=True)
    args = parser.parse_args(argv[1:])
    run_dir = Path(args.run_dir)
    launch = read_launch(Path(args.launch_file))
    if args.role == "supervise":
        engine = [*_python("tui_trainer.detached.launcher"), "engine", *argv[2:]]
        if launch.hosting.processes > 1:
            engine = [*_python("torch.distributed.run"), "--nproc-per-node", str(launch.hosting.processes),
                      "--master-port", str(free_port()), "-m", "tui_trainer.detached.launcher", "engine", *argv[2:]]
        return supervise(run_dir, engine)
    return serve(run_dir, launch)


if __name__ == "__main__":
    sys.exit(main())
