"""Start-up: the seconds a person waits, timed from outside as they see them.

Figures (median seconds of several rounds; one round runs every figure once, one after another, so drift on a
noisy machine hits all alike; ratios are medians of the ratios within each round):
  help_s, presets_s      `tui-trainer --help`, `tui-trainer presets`, to exit;
  first_frame_s          the app (digits-mlp, 120x40 pseudo-terminal) from its start to the setup screen's
                         preset list drawn;
  import_s               `python -c "import torch, sklearn.datasets"`, the baseline;
  headless_first_step_s  `tui-trainer --headless --preset iris-linear` in a pseudo-terminal, from the command to
                         the progress bar's first step (N/total, N >= 1), and
  headless_exit_s        to its exit; each also as a ratio to import_s (goal: at most 1.25);
  headless_cpu_s         the CPU seconds it used, as a ratio to import_cpu_s, the baseline's (on a busy machine
                         wall times swing with the other work; CPU time much less);
  app_engine_*, app_thread_*
                         the app in tmux (120x40) on iris-linear, in its default engine process and with
                         --in-thread: from ctrl+r on the setup screen to the dashboard drawn (`Step 0/...`:
                         *_dashboard_s) and to the first step on screen (`Step N/...`, N >= 1: *_first_step_s);
                         goal: at most 1 s. Ctrl+r is pressed once the app's processes have been quiet for a
                         moment after its first frame (as when a person reads the form), at most --think-s after.

--compare-with DIR (a source tree of another commit, e.g. `git archive <commit> | tar -x -C DIR`) times every
figure of that tree too, in the same rounds, under `before.`; this tree's are under `after.`.
Run: python benchmarks/startup.py [--quick] [--repeats N] [--compare-with DIR] [--think-s S]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pty
import re
import resource
import select
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from common import report

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SIZE = (120, 40)
POLL_S = 0.04
"""How often the tmux screen is read (each capture is a process: more often would take CPU from the app)."""
QUIET_CPU_S = 0.05
"""The app's processes count as quiet when they use less CPU than this over QUIET_WINDOW_S."""
QUIET_WINDOW_S = 0.5
TIMEOUT_S = 120.0
TMUX = ["tmux", "-L", "tui-trainer-startup"]
"""A tmux server of the benchmark's own (it ends with its last session)."""
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\x1b[=>]")
STEP_ON_SCREEN = re.compile(r"Step ([\d,]+)/[\d,]+")
APP_RUN = ["--preset", "iris-linear", "--epochs", "100000", "--set", "checkpoint.every_epochs=0",
           "--set", "checkpoint.save_best=false"]
"""A run that lasts until the benchmark leaves it (it saves last.pt then)."""


class Tree:
    """A source tree whose `python -m tui_trainer` is timed."""

    def __init__(self, label: str, path: Path) -> None:
        self.label, self.path = label, path.resolve()

    def command(self) -> list[str]:
        return [sys.executable, "-m", "tui_trainer"]

    def env(self, base: dict[str, str]) -> dict[str, str]:
        return {**base, "PYTHONPATH": str(self.path)}


# ---------------------------------------------------------------- commands and the pseudo-terminal


def time_command(command: list[str], env: dict[str, str], cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env, cwd=cwd)
    return time.perf_counter() - start


def children_cpu_s() -> float:
    """CPU seconds of this process's ended children so far: the difference around a command is its own (less
    sensitive than wall time to other work on the machine)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _open_terminal() -> tuple[int, int]:
    import fcntl
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", SIZE[1], SIZE[0], 0, 0))
    return leader, follower


def in_terminal(command: list[str], env: dict[str, str], cwd: str, marks: dict[str, Callable[[bytes], bool]],
                until_exit: bool, timeout_s: float = TIMEOUT_S) -> dict[str, float]:
    """Run command in a pseudo-terminal; the seconds from its start until each mark first holds for the output
    so far (escape codes removed), and `exit_s` when until_exit (else it is stopped once every mark held)."""
    leader, follower = _open_terminal()
    start = time.perf_counter()
    process = subprocess.Popen(command, stdin=follower, stdout=follower, stderr=follower, env=env, cwd=cwd,
                               start_new_session=True)
    os.close(follower)
    seen, raw = {}, b""
    try:
        deadline = start + timeout_s
        while time.perf_counter() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.02)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                raw += chunk
                text = ANSI.sub(b"", raw)
                for name, holds in marks.items():
                    if name not in seen and holds(text):
                        seen[name] = time.perf_counter() - start
                if not until_exit and len(seen) == len(marks):
                    break
            elif until_exit and process.poll() is not None:
                break
        if until_exit:
            process.wait(timeout=max(1.0, deadline - time.perf_counter()))
            seen["exit_s"] = time.perf_counter() - start
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        os.close(leader)
    if until_exit and process.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} exited with {process.returncode}: {ANSI.sub(b'', raw)[-400:]!r}")
    return {name: seen.get(name, float("nan")) for name in [*marks, *(["exit_s"] if until_exit else [])]}


def first_frame(tree: Tree, env: dict[str, str], cwd: str) -> float:
    marks = {"frame": lambda text: b"Presets" in text}
    return in_terminal([*tree.command(), "--preset", "digits-mlp"], tree.env(env), cwd, marks, until_exit=False)[
        "frame"]


def _first_step_drawn(text: bytes) -> bool:
    """The headless progress bar shows a step: `N/total` with N >= 1 (the run's line names the total)."""
    total = re.search(rb"parameters,\s+([\d,]+)\s+steps", text)
    if total is None:
        return False
    return re.search(rb"\b[1-9][\d,]*/" + re.escape(total.group(1)) + rb"\b", text[total.end():]) is not None


def headless(tree: Tree, env: dict[str, str], cwd: str, checkpoints: str) -> tuple[float, float, float]:
    """Seconds to the first step and to the exit, and the CPU seconds it used."""
    command = [*tree.command(), "--headless", "--preset", "iris-linear", "--checkpoint-dir", checkpoints]
    cpu = children_cpu_s()
    times = in_terminal(command, tree.env(env), cwd, {"first_step": _first_step_drawn}, until_exit=True)
    return times["first_step"], times["exit_s"], children_cpu_s() - cpu


# ---------------------------------------------------------------- the app in tmux


class Tmux:
    """One detached tmux session of SIZE running a command; its screen read with capture-pane."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: str) -> None:
        self.name = f"startup-{uuid.uuid4().hex[:8]}"
        line = " ".join(f"{key}={shlex.quote(value)}" for key, value in env.items() if key in ("PYTHONPATH",
                        "XDG_CONFIG_HOME", "XDG_STATE_HOME", "TERM", "COLORTERM"))
        subprocess.run([*TMUX, "new-session", "-d", "-s", self.name, "-x", str(SIZE[0]), "-y", str(SIZE[1]),
                        "-c", cwd, f"env {line} {shlex.join(command)}"], check=True, env=env)
        pane_pid = subprocess.run([*TMUX, "display-message", "-p", "-t", self.name, "#{pane_pid}"], check=True,
                                  capture_output=True, text=True).stdout.strip()
        self.app = psutil.Process(int(pane_pid))

    def screen(self) -> str:
        done = subprocess.run([*TMUX, "capture-pane", "-p", "-t", self.name], capture_output=True, text=True)
        return done.stdout if done.returncode == 0 else ""

    def keys(self, *keys: str) -> None:
        subprocess.run([*TMUX, "send-keys", "-t", self.name, *keys], check=True)

    def wait_for(self, condition: Callable[[str], bool], what: str, timeout_s: float = TIMEOUT_S) -> float:
        """Seconds until condition holds for the screen."""
        start = time.perf_counter()
        while time.perf_counter() - start < timeout_s:
            if condition(self.screen()):
                return time.perf_counter() - start
            time.sleep(POLL_S)
        raise RuntimeError(f"tmux: no {what} within {timeout_s:.0f} s:\n{self.screen()}")

    def processes(self) -> list[psutil.Process]:
        with contextlib.suppress(psutil.NoSuchProcess):
            return [self.app, *self.app.children(recursive=True)]
        return []

    def wait_until_quiet(self, longest_s: float) -> float:
        """Seconds until the app and every process it started used under QUIET_CPU_S in QUIET_WINDOW_S."""
        start = time.perf_counter()
        previous = None
        while time.perf_counter() - start < longest_s:
            used = sum(_cpu_s(process) for process in self.processes())
            if previous is not None and used - previous < QUIET_CPU_S:
                break
            previous = used
            time.sleep(QUIET_WINDOW_S)
        return time.perf_counter() - start

    def close(self) -> None:
        """End the app as a closed terminal does (it saves and stops its run) and wait for all its processes."""
        processes = self.processes()
        subprocess.run([*TMUX, "kill-session", "-t", self.name], capture_output=True)
        psutil.wait_procs(processes, timeout=60)


def _cpu_s(process: psutil.Process) -> float:
    with contextlib.suppress(psutil.Error):
        times = process.cpu_times()
        return times.user + times.system
    return 0.0


def _step_shown(screen: str, at_least: int) -> bool:
    match = STEP_ON_SCREEN.search(screen)
    return match is not None and int(match.group(1).replace(",", "")) >= at_least


def app_start(tree: Tree, env: dict[str, str], cwd: str, checkpoints: str, in_thread: bool,
              think_s: float) -> tuple[float, float, float]:
    """ctrl+r -> dashboard, ctrl+r -> first step (seconds), and how long the form was left before ctrl+r."""
    command = [*tree.command(), *APP_RUN, "--checkpoint-dir", checkpoints, *(["--in-thread"] if in_thread else [])]
    session = Tmux(command, tree.env(env), cwd)
    try:
        session.wait_for(lambda screen: "Start (ctrl+r)" in screen and "iris-linear" in screen, "setup screen")
        waited = session.wait_until_quiet(think_s)
        session.keys("C-r")
        start = time.perf_counter()
        session.wait_for(lambda screen: _step_shown(screen, 0), "dashboard")
        dashboard = time.perf_counter() - start
        session.wait_for(lambda screen: _step_shown(screen, 1), "first step")
        return dashboard, time.perf_counter() - start, waited
    finally:
        session.close()


# ---------------------------------------------------------------- rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, help="rounds (default 5; --quick 3)")
    parser.add_argument("--quick", action="store_true", help="3 rounds, no --help/presets/first frame figures")
    parser.add_argument("--compare-with", metavar="DIR", help="another source tree, timed in the same rounds")
    parser.add_argument("--think-s", type=float, default=15.0,
                        help="longest wait on the setup screen before ctrl+r (default 15)")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 5)
    trees = [Tree("after" if args.compare_with else "this", ROOT)]
    if args.compare_with:
        trees.insert(0, Tree("before", Path(args.compare_with)))
    runs: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        runs.setdefault(key, []).append(value)
        print(f"  {key}: {value:.3f}", file=sys.stderr)

    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "TERM": "xterm-256color", "XDG_CONFIG_HOME": home, "XDG_STATE_HOME": home,
               "COLUMNS": str(SIZE[0]), "LINES": str(SIZE[1])}
        env.pop("TMUX", None)
        checkpoints = str(Path(home) / "checkpoints")
        for round_index in range(repeats):
            print(f"round {round_index + 1}/{repeats}", file=sys.stderr)
            cpu = children_cpu_s()
            add("import_s", time_command([sys.executable, "-c", "import torch, sklearn.datasets"], env, home))
            add("import_cpu_s", children_cpu_s() - cpu)
            for tree in trees:
                prefix = f"{tree.label}."
                if not args.quick:
                    add(prefix + "help_s", time_command([*tree.command(), "--help"], tree.env(env), home))
                    add(prefix + "presets_s", time_command([*tree.command(), "presets"], tree.env(env), home))
                    add(prefix + "first_frame_s", first_frame(tree, env, home))
                first_step, exit_s, cpu_s = headless(tree, env, home, checkpoints)
                add(prefix + "headless_first_step_s", first_step)
                add(prefix + "headless_exit_s", exit_s)
                add(prefix + "headless_cpu_s", cpu_s)
                for mode, in_thread in (("engine", False), ("thread", True)):
                    dashboard, first, waited = app_start(tree, env, home, checkpoints, in_thread, args.think_s)
                    add(f"{prefix}app_{mode}_dashboard_s", dashboard)
                    add(f"{prefix}app_{mode}_first_step_s", first)
                    add(f"{prefix}app_{mode}_form_left_s", waited)
    medians = {key: statistics.median(values) for key, values in runs.items()}
    ratios = {}
    for tree in trees:
        for figure, base in (("headless_first_step_s", "import_s"), ("headless_exit_s", "import_s"),
                             ("headless_cpu_s", "import_cpu_s")):
            key = f"{tree.label}.{figure}"
            ratios[f"{key}_vs_import"] = statistics.median(
                [value / baseline for value, baseline in zip(runs[key], runs[base], strict=True)])
    table: list[tuple[str, ...]] = [("figure", *(tree.label for tree in trees), "goal")]
    figures = sorted({key.split(".", 1)[1] for key in medians if "." in key}, key=_figure_order)
    goals = {"headless_first_step_s": "<= 1.25x import", "headless_exit_s": "<= 1.25x import",
             "app_engine_dashboard_s": "<= 1 s", "app_engine_first_step_s": "<= 1 s",
             "app_thread_dashboard_s": "<= 1 s", "app_thread_first_step_s": "<= 1 s"}
    table.append(("import_s (baseline)", *(f"{medians['import_s']:.2f}" for _ in trees), ""))
    table.append(("import_cpu_s (baseline)", *(f"{medians['import_cpu_s']:.2f}" for _ in trees), ""))
    for figure in figures:
        cells = []
        for tree in trees:
            value = medians.get(f"{tree.label}.{figure}", float("nan"))
            ratio = ratios.get(f"{tree.label}.{figure}_vs_import")
            cells.append(f"{value:.2f}" + (f" ({ratio:.2f}x)" if ratio is not None else ""))
        table.append((figure, *cells, goals.get(figure, "")))
    payload: dict[str, Any] = {"rounds": repeats, "think_s": args.think_s, "trees": {tree.label: str(tree.path)
                               for tree in trees}, "runs": runs, "median": medians, "ratios": ratios,
                               "load_average": os.getloadavg()}
    report("startup (median seconds; ratio to import_s in the same round)", payload, table)


def _figure_order(figure: str) -> tuple[int, str]:
    order = ["help_s", "presets_s", "first_frame_s", "headless_first_step_s", "headless_exit_s", "headless_cpu_s"]
    return (order.index(figure), figure) if figure in order else (len(order), figure)


if __name__ == "__main__":
    main()
