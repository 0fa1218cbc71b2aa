"""The two figures a person sees of a shipped in-memory preset, each against a user's own script
(tutorial_script.py), both sides in fresh processes:

- per training step, in the steady state: the median over the epochs after warm-up (the first tenth) of each
  epoch's training steps per second: the loop of steps alone, as each side times it (the script its own loop,
  the command each call of Trainer._train_epoch), validation, records and checkpoints between epochs left out;
- the whole command, from the process start to its exit: `tui-trainer --headless --preset X` against the
  script doing the same epochs and saving its model once with torch.save.

The command runs as its console script does (`from tui_trainer.cli import main; sys.exit(main(...))`, in a
`python -c` of a few lines more that times each epoch's steps), so one process gives both of its figures.

Ratios are headless / tutorial as speeds: above 1 the command is the faster.
"""

from __future__ import annotations

import json
import math
import os
import resource
import select
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent
TUTORIAL_SCRIPT = BENCHMARKS / "tutorial_script.py"
WARMUP_FRACTION = 0.1
"""The first tenth of a run's epochs (at least one) is warm-up: allocator, caches, the first optimizer step."""


def in_memory_presets() -> list[str]:
    """The shipped presets whose data ships in a package or is generated (no download): the ones the figures
    are taken on."""
    from tui_trainer.catalog.datasets import DATASETS, VisionOptions
    from tui_trainer.presets import load_config, shipped_presets_dir

    names = []
    for path in sorted(shipped_presets_dir().glob("*.yaml")):
        config = load_config(path.stem, {})
        if not issubclass(DATASETS[config.data.source].options, VisionOptions):
            names.append(path.stem)
    return names


def tutorial_spec(config: Any, epochs: int | None = None, device: str = "cpu") -> dict[str, Any]:
    """What tutorial_script.py trains for a RunConfig: the same data, model, loss, optimizer and epochs."""
    from tui_trainer.catalog.optimizers import OPTIMIZERS

    optimizer = OPTIMIZERS[config.optimizer.name]
    hyperparameters = {key: value for key, value in config.optimizer.model_dump(exclude={"name"}).items()
                       if key in optimizer.hyperparameters and value is not None}
    return {
        "dataset": config.data.source, "options": dict(config.data.options), "val_split": config.data.val_split,
        "seed": config.seed, "batch_size": config.data.batch_size, "task": config.task,
        "model": config.model.name, "model_options": dict(config.model.options), "loss": config.loss.name,
        "optimizer": optimizer.torch_class, "hyperparameters": hyperparameters,
        "epochs": epochs or config.epochs, "device": device,
    }


def warmup_epochs(epochs: int) -> int:
    """Epochs left out of the steady state at the start of a run of `epochs` (never all of them)."""
    return min(max(1, math.ceil(epochs * WARMUP_FRACTION)), max(epochs - 1, 0))


def steady_steps_per_s(epoch_s: list[float], epoch_steps: list[int]) -> float:
    """The median, over the epochs after warm-up, of each epoch's training steps per second."""
    skip = warmup_epochs(len(epoch_s))
    rates = [steps / seconds for seconds, steps in zip(epoch_s[skip:], epoch_steps[skip:], strict=True)
             if seconds > 0 and steps > 0]
    return median(rates) if rates else float("nan")


def headless_args(preset: str, checkpoint_dir: Path, device: str) -> list[str]:
    """What a user types after `tui-trainer` (the run folders go under checkpoint_dir)."""
    return ["--headless", "--preset", preset, "--checkpoint-dir", str(checkpoint_dir), "--device", device]


# The command's own code path (the console script's `main()`), with each epoch's loop of steps timed. The timer
# goes in when the run imports the trainer, not before: importing it here first would import torch outside the
# run, where the run's own settings (its garbage collector's pause, see process_gc) do not reach.
_TIMED_COMMAND = """\
import importlib.machinery, json, sys, time
epoch_s, epoch_steps = [], []
def timed(train_epoch):
    def run(self, window):
        step, started = self.step, time.perf_counter()
        train_epoch(self, window)
        epoch_s.append(time.perf_counter() - started)
        epoch_steps.append(self.step - step)
    return run
class TimeEpochs:
    def find_spec(self, name, path, target=None):
        if name != "tui_trainer.engine.trainer":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        load = spec.loader.exec_module
        def exec_module(module):
            load(module)
            module.Trainer._train_epoch = timed(module.Trainer._train_epoch)
        spec.loader.exec_module = exec_module
        return spec
sys.meta_path.insert(0, TimeEpochs())
from tui_trainer.cli import main
code = main(sys.argv[2:])
with open(sys.argv[1], "w") as file:
    json.dump({"epoch_train_s": epoch_s, "epoch_steps": epoch_steps}, file)
sys.exit(code)
"""


def timed_command(args: list[str], result: Path) -> list[str]:
    """`tui-trainer ARGS` as its console script runs it, each epoch's steps timed into the JSON file result (-P:
    the current folder is not searched for modules, as it is not for a console script)."""
    return [sys.executable, "-P", "-c", _TIMED_COMMAND, str(result), *args]


def tutorial_command(spec_path: Path, model_path: Path) -> list[str]:
    return [sys.executable, str(TUTORIAL_SCRIPT), str(spec_path), str(model_path)]


def child_env(code_root: Path = ROOT, threads: str = "default") -> dict[str, str]:
    """The environment a side runs in: this one, with code_root's tui_trainer first on the path, bytecode cached
    as an installed package has it (PYTHONDONTWRITEBYTECODE would compile every module of ours from source on
    every start, and none of torch's), and torch's threads as the user left them unless threads names a count."""
    path = os.pathsep.join(filter(None, [str(code_root), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if threads != "default":
        env["OMP_NUM_THREADS"] = threads
    return env


@dataclass(frozen=True)
class Timed:
    """One process's run: seconds from its start to its exit, the CPU seconds it used, what it printed."""

    seconds: float
    cpu_s: float
    stdout: str


def timed_process(args: list[str], env: dict[str, str], cwd: Path, tty: bool = False,
                  timeout_s: float = 900.0) -> Timed:
    """Run args in cwd to their end, stdout on a pipe or (tty) in a pseudo-terminal of 120x40. Raises
    RuntimeError when they fail."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    if tty:
        code, stdout, stderr = _in_terminal(args, env, cwd, timeout_s)
    else:
        done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                              timeout=timeout_s, check=False)
        code, stdout, stderr = done.returncode, done.stdout, done.stderr
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:
        raise RuntimeError(f"{' '.join(args[:4])} ... exited {code}: {stderr[-2000:]}")
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timed(elapsed, cpu_s, stdout)


def _in_terminal(args: list[str], env: dict[str, str], cwd: Path, timeout_s: float) -> tuple[int, str, str]:
    """args with stdout in a pseudo-terminal (read as it comes, as a terminal would), stderr on a pipe."""
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    with subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=follower, stderr=subprocess.PIPE, cwd=cwd,
                          env={**env, "TERM": env.get("TERM", "xterm-256color")}) as process:
        os.close(follower)
        chunks = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the process has closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(leader)
        if process.poll() is None:
            process.kill()
        stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
        code = process.wait()
    return code, b"".join(chunks).decode(errors="replace").replace("\r\n", "\n"), stderr


@dataclass
class PresetFigures:
    """One preset's runs, one entry a round for each side: "headless" (this checkout), "headless@before" (another
    checkout's, when one is compared), "tutorial" and "tutorial@N" (the user's script with torch's threads as the
    user has them, or N of them): whole-command seconds and CPU seconds, steady steps/s."""

    preset: str
    epochs: int
    command_s: dict[str, list[float]] = field(default_factory=dict)
    command_cpu_s: dict[str, list[float]] = field(default_factory=dict)
    steady_steps_per_s: dict[str, list[float]] = field(default_factory=dict)

    def add(self, side: str, command: Timed | None = None, steady: float | None = None) -> None:
        if command is not None:
            self.command_s.setdefault(side, []).append(command.seconds)
            self.command_cpu_s.setdefault(side, []).append(command.cpu_s)
        if steady is not None:
            self.steady_steps_per_s.setdefault(side, []).append(steady)

    def sides(self, kind: str) -> list[str]:
        return [side for side in self.command_s if side.startswith(kind)]

    def ratio(self, top: str, bottom: str) -> dict[str, float]:
        """top / bottom as speeds: per step (steady) and over the whole command (wall and CPU); medians of the
        rounds, and the median of each round's own ratio (paired: drift between rounds cancels)."""
        ratios: dict[str, float] = {}
        steady_top, steady_bottom = self.steady_steps_per_s.get(top, []), self.steady_steps_per_s.get(bottom, [])
        if steady_top and steady_bottom:
            ratios["per_step"] = median(steady_top) / median(steady_bottom)
            ratios["per_step_paired"] = median([a / b for a, b in zip(steady_top, steady_bottom, strict=False)])
        command_top, command_bottom = self.command_s.get(top, []), self.command_s.get(bottom, [])
        if command_top and command_bottom:
            ratios["command"] = median(command_bottom) / median(command_top)
            ratios["command_paired"] = median([b / a for a, b in zip(command_top, command_bottom, strict=False)])
            ratios["command_cpu"] = median(self.command_cpu_s[bottom]) / median(self.command_cpu_s[top])
        return ratios

    def ratios(self) -> dict[str, dict[str, float]]:
        """Each headless side against each tutorial side ("headless / tutorial@1"), and this checkout against the
        one compared ("headless / headless@before")."""
        pairs = [(top, bottom) for top in self.sides("headless") for bottom in self.sides("tutorial")]
        if "headless@before" in self.command_s:
            pairs.append(("headless", "headless@before"))
        return {f"{top} / {bottom}": self.ratio(top, bottom) for top, bottom in pairs}

    def to_dict(self) -> dict[str, Any]:
        medians = {name: {side: median(values) for side, values in series.items() if values}
                   for name, series in (("command_s", self.command_s), ("command_cpu_s", self.command_cpu_s),
                                        ("steady_steps_per_s", self.steady_steps_per_s))}
        return {"epochs": self.epochs, "command_s": self.command_s, "command_cpu_s": self.command_cpu_s,
                "steady_steps_per_s": self.steady_steps_per_s, "median": medians, "ratios": self.ratios()}


def tutorial_side(threads: str) -> str:
    return "tutorial" if threads == "default" else f"tutorial@{threads}"


class PresetRunner:
    """Runs one preset's sides in fresh processes, in a folder of its own."""

    def __init__(self, preset: str, folder: Path, device: str = "cpu", tty: bool = False) -> None:
        from tui_trainer.presets import load_config

        self.preset, self.folder, self.device, self.tty = preset, folder, device, tty
        self.config = load_config(preset, {})
        self.checkpoints = folder / "checkpoints"
        self.epochs: int | None = None
        """The epochs the headless command trained, once it has run (the tutorial trains as many)."""

    def headless(self, code_root: Path = ROOT) -> tuple[Timed, float]:
        """`tui-trainer --headless --preset X` (code_root's tui_trainer), timed from outside, and its steady
        steps/s."""
        result = self.folder / f"{self.preset}-epochs.json"
        command = timed_command(headless_args(self.preset, self.checkpoints, self.device), result)
        timed = timed_process(command, child_env(code_root), self.folder, tty=self.tty)
        timing = json.loads(result.read_text())
        self.epochs = self.epochs or len(timing["epoch_train_s"])
        return timed, steady_steps_per_s(timing["epoch_train_s"], timing["epoch_steps"])

    def tutorial(self, threads: str = "default") -> tuple[Timed, float]:
        """The user's script doing the same epochs (timed from outside), and its steady steps/s."""
        spec_path = self.folder / f"{self.preset}.json"
        spec_path.write_text(json.dumps(tutorial_spec(self.config, self.epochs, self.device)))
        timed = timed_process(tutorial_command(spec_path, self.folder / f"{self.preset}-model.pt"),
                              child_env(threads=threads), self.folder, tty=self.tty)
        timing = json.loads(timed.stdout.strip().splitlines()[-1])
        return timed, steady_steps_per_s(timing["epoch_train_s"], timing["epoch_steps"])


def measure(presets: list[str], folder: Path, repeats: int, device: str = "cpu", tutorial_threads: tuple[str, ...]
            = ("default",), before: Path | None = None, tty: bool = False,
            log: Callable[[str], None] | None = None) -> dict[str, PresetFigures]:
    """Every preset's figures over `repeats` rounds, each running every side of every preset once (interleaved,
    so the machine's drift hits all alike). In each round the headless command goes first: its first run says
    how many epochs the tutorial trains. before: another checkout, whose headless runs beside this one's. tty:
    both sides print to a pseudo-terminal (the command then draws its progress bar)."""
    runners = {name: PresetRunner(name, folder / name, device, tty) for name in presets}
    figures = {name: PresetFigures(name, runner.config.epochs) for name, runner in runners.items()}
    headless_sides = {"headless": ROOT, **({"headless@before": before} if before else {})}
    for runner in runners.values():
        runner.folder.mkdir(parents=True, exist_ok=True)
    for round_index in range(repeats):
        for name, runner in runners.items():
            entry = figures[name]
            for side, code_root in headless_sides.items():
                command, steady = runner.headless(code_root)
                entry.add(side, command=command, steady=steady)
            entry.epochs = runner.epochs or entry.epochs
            for threads in tutorial_threads:
                command, steady = runner.tutorial(threads)
                entry.add(tutorial_side(threads), command=command, steady=steady)
            if log is not None:
                log(f"  round {round_index + 1}/{repeats} {name}: " + ", ".join(
                    f"{side} {entry.command_s[side][-1]:.2f} s, {entry.steady_steps_per_s[side][-1]:.0f} steps/s"
                    for side in entry.command_s))
    return figures
