"""Starting a detached run, and the two processes it consists of.

`launch_detached` starts a supervisor in a new session (so it survives SIGHUP and the app's exit). The
supervisor starts the engine and waits for it: if the engine dies without saying it finished (SIGKILL,
a crash), the supervisor marks the run lost in run.json with the exit status and removes its socket.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tui_trainer.engine.events import FINAL_STATES
from tui_trainer.engine.runinfo import SOCKET_FILE, RunInfo, process_alive, read_run_info, write_run_info
from tui_trainer.launch import LaunchOptions

ENGINE_LOG = "engine.log"
OPTIONS_FILE = "launch.json"
"""What the engine was asked to run (LaunchOptions as JSON), readable by the user alone."""
READY_TIMEOUT_S = 180.0


class DetachError(Exception):
    """The detached run did not start; the message is the engine's own one-line reason."""


def _python(module: str) -> list[str]:
    """`python -m module` that never imports from the current folder: -P keeps it off sys.path (a psutil.py or
    a torch/ there would otherwise run inside the engine). PYTHONSAFEPATH in ENGINE_ENV does the same for the
    processes torchrun starts."""
    return [sys.executable, "-P", "-m", module]


ENGINE_ENV = {"PYTHONSAFEPATH": "1"}


def _supervisor_command(run_dir: Path, options: LaunchOptions, pause_on_fault: bool) -> list[str]:
    """The supervisor's command line. The options (the whole config, paths, overrides) go in a file only the
    user can read, not on the command line, which every user of the machine sees in `ps`."""
    options_file = run_dir / OPTIONS_FILE
    descriptor = os.open(options_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        os.fchmod(file.fileno(), 0o600)
        json.dump(dataclasses.asdict(options), file)
    command = [*_python("tui_trainer.detached.launcher"), "supervise", "--run-dir", str(run_dir),
               "--options-file", str(options_file)]
    return command + (["--pause-on-fault"] if pause_on_fault else [])


def read_options(path: Path) -> LaunchOptions:
    with path.open(encoding="utf-8") as file:
        return LaunchOptions(**json.load(file))


def launch_detached(options: LaunchOptions, pause_on_fault: bool = True,
                    timeout_s: float = READY_TIMEOUT_S) -> RunInfo:
    """Validate, start the run in the background, and return once it trains (or say why it could not).
    Bad input raises ConfigError/CheckpointError here, before any process starts."""
    from tui_trainer.engine.run_folder import claim_run_folder
    from tui_trainer.launch import resolve_config

    config, _ = resolve_config(options)
    folder = claim_run_folder(config, options.resume)  # made (or locked) for this run alone
    run_dir = folder.path
    launched_at = time.time()
    log_descriptor = os.open(run_dir / ENGINE_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    with folder, os.fdopen(log_descriptor, "ab") as log:
        # The supervisor inherits the folder's lock and holds it for the run's life.
        supervisor = subprocess.Popen(
            _supervisor_command(run_dir, options, pause_on_fault), stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
            env={**os.environ, **ENGINE_ENV, **folder.child_env()}, pass_fds=folder.child_fds(),
        )
    # An owned engine waits for its app before the first step: set up (run.json says starting) is ready.
    ready = ("starting", "running", "paused") if options.owned else ("running", "paused")
    return wait_until_ready(run_dir, supervisor, timeout_s, since=launched_at, ready_states=ready)


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
        if info is not None and info.state in (*FINAL_STATES, "lost"):
            raise DetachError(f"run {run_dir.name} ended at once ({info.state}): {info.reason or _last_line(run_dir)}")
        if supervisor.poll() is not None:
            raise DetachError(_last_line(run_dir) or f"the engine exited with status {supervisor.returncode}")
        time.sleep(0.1)
    raise DetachError(f"run {run_dir.name} did not start within {timeout_s:.0f} s; see {run_dir / ENGINE_LOG}")


def _last_line(run_dir: Path, tail_bytes: int = 64 * 1024) -> str:
    """The engine log's last line (its one-line reason), read from the log's tail only."""
    try:
        with (run_dir / ENGINE_LOG).open("rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - tail_bytes))
            lines = log.read(tail_bytes).decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].removeprefix("tui-trainer: error: ") if lines else ""


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
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    engine = subprocess.Popen(engine_command, stdin=subprocess.DEVNULL)

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
    if info is not None and info.state not in FINAL_STATES:
        info.state = "lost"
        info.exit_status = describe_exit(returncode)
        info.reason = f"the engine process {info.exit_status}"
        write_run_info(info)
    if returncode < 0:
        # Killed: it could not remove its socket. An engine that ended by itself removed its own, and the
        # path may already be a newer engine's (resuming a run's last.pt continues in its folder).
        with contextlib.suppress(FileNotFoundError):
            (run_dir / SOCKET_FILE).unlink()
    return 0 if returncode == 0 else 1


def serve(run_dir: Path, options: LaunchOptions, pause_on_fault: bool) -> int:
    """The engine: train with a control socket in the run folder."""
    from tui_trainer.catalog.datasets import DatasetError
    from tui_trainer.catalog.models import ImportedModelError
    from tui_trainer.config import ConfigError
    from tui_trainer.detached.server import ControlServer, EventHub, install_stop_signals
    from tui_trainer.engine.checkpoints import CheckpointError
    from tui_trainer.engine.controls import Controls
    from tui_trainer.engine.distributed import from_environment
    from tui_trainer.engine.runinfo import RunInfoWriter, fan_out
    from tui_trainer.launch import resolve_config
    from tui_trainer.logs import setup_file_logging

    setup_file_logging()
    controls = Controls()
    install_stop_signals(controls)
    parallel = from_environment()
    hub = EventHub()
    writer = RunInfoWriter(detached=not options.owned, attachable=True)
    # Under torchrun rank 0 holds the socket; the others get their commands from it.
    server = ControlServer(run_dir, hub, controls, owned=options.owned, on_release=writer.mark_detached,
                           owner_pid=options.owner_pid) if parallel.is_main else None
    try:
        config, _ = resolve_config(options)
        from tui_trainer.engine.trainer import Trainer

        trainer = Trainer(config, fan_out(writer, hub.publish), controls=controls, resume_from=options.resume,
                          run_dir=run_dir, pause_on_fault=pause_on_fault, parallel=parallel,
                          start_paused=options.start_paused,
                          before_training=server.wait_for_owner if server is not None and options.owned else None)
        result = trainer.run()
    except (ConfigError, CheckpointError, DatasetError, ImportedModelError) as error:
        print(f"tui-trainer: error: {error}", file=sys.stderr, flush=True)
        if parallel.is_main:
            write_run_info(RunInfo(run_id=run_dir.name, run_dir=str(run_dir), state="failed", reason=str(error),
                                   pid=os.getpid(), started_at=time.time(), detached=True))
        return 2
    finally:
        hub.close()
        if server is not None:
            server.close()
    return 1 if result.state == "failed" else 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    parser = argparse.ArgumentParser(prog="tui_trainer.detached.launcher")
    parser.add_argument("role", choices=["supervise", "engine"])
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--options-file", required=True)
    parser.add_argument("--pause-on-fault", action="store_true")
    args = parser.parse_args(argv[1:])
    run_dir = Path(args.run_dir)
    options = read_options(Path(args.options_file))
    if args.role == "supervise":
        engine = [*_python("tui_trainer.detached.launcher"), "engine", *argv[2:]]
        if options.processes > 1:
            engine = [*_python("torch.distributed.run"), "--nproc-per-node", str(options.processes),
                      "--master-port", str(free_port()), "-m", "tui_trainer.detached.launcher", "engine", *argv[2:]]
        return supervise(run_dir, engine)
    return serve(run_dir, options, args.pause_on_fault)


if __name__ == "__main__":
    sys.exit(main())
