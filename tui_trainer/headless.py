"""Headless runs: hosted in the foreground of the shell (runs.host: its signals save and stop the run), progress
on stdout.

On a terminal a Rich progress display; otherwise one plain line per epoch and every few seconds, fit
for CI logs; with --json one JSON object per event.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from tui_trainer import formatting as fmt
from tui_trainer import process_gc
from tui_trainer.engine.events import (
    CheckpointFailed,
    CheckpointSaved,
    EpochEnded,
    Event,
    HyperparametersChanged,
    Progress,
    RunFailed,
    RunFinished,
    RunStarted,
    StateChanged,
    Warning,
)
from tui_trainer.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, UserError, report, signal_exit
from tui_trainer.launch import LaunchOptions
from tui_trainer.logs import get_logger, setup_file_logging
from tui_trainer.runs.cpu_share import ThreadChoice
from tui_trainer.runs.host import exit_code
from tui_trainer.text import literal, printable

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_OK", "exit_code", "print_summary", "run_headless"]
PLAIN_EVERY_S = 5.0
log = get_logger("headless")


class PlainReporter:
    """Lines for logs: the start, every epoch, progress every few seconds, checkpoints, the end."""

    def __init__(self, out: TextIO, every_s: float = PLAIN_EVERY_S) -> None:
        self.out = out
        self.every_s = every_s
        self._last_line = 0.0
        self.epochs = 0

    def _print(self, text: str) -> None:
        print(printable(text), file=self.out, flush=True)  # run ids, paths and messages as written

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.epochs = event.epochs
            resumed = f", resumed at step {event.start_step}" if event.start_step else ""
            self._print(f"run {event.run_id}: {event.preset} on {event.device} ({event.device_name}), "
                        f"{event.parameters:,} parameters, {event.train_samples} train / {event.val_samples} "
                        f"val samples, {event.total_steps} steps{resumed}{threads_note(event)}")
            self._print(f"run folder: {event.run_dir}")
            self._last_line = time.monotonic()
        elif isinstance(event, Progress):
            now = time.monotonic()
            if now - self._last_line >= self.every_s:
                self._last_line = now
                self._print(progress_line(event, self.epochs))
        elif isinstance(event, EpochEnded):
            best = "  (best)" if event.is_best else ""
            self._print(f"epoch {event.epoch}/{self.epochs}  step {event.step}  {fmt.metrics_text(event.train)}  "
                        f"{fmt.metrics_text(event.val)}  lr {fmt.number(event.lr)}{best}")
        else:
            line = event_line(event)
            if line:
                self._print(line)


def threads_note(event: RunStarted) -> str:
    """"; torch threads 1 of 2 CPUs (1 busy)", or nothing from a host that did not say."""
    choice = ThreadChoice.from_dict(event.threads)
    return f"; {choice.describe()}" if choice is not None else ""


def progress_line(event: Progress, epochs: int) -> str:
    accuracy = f"  acc {fmt.percent(event.train_accuracy)}" if event.train_accuracy is not None else ""
    return (f"epoch {event.epoch}/{epochs}  step {event.step}/{event.total_steps}  loss {fmt.number(event.train_loss)}"
            f"{accuracy}  {event.samples_per_s:,.0f} samples/s  eta {fmt.duration(event.eta_s)}")


def event_line(event: Event) -> str | None:
    """The one line that events other than progress get in every output mode."""
    if isinstance(event, CheckpointSaved):
        return f"saved {event.path} ({fmt.size(event.size_bytes)}, {event.reason})"
    if isinstance(event, CheckpointFailed):
        return f"checkpoint not saved: {event.path}: {event.message}"
    if isinstance(event, HyperparametersChanged):
        changes = ", ".join(f"{key} {event.previous.get(key, '?')} -> {value}" for key, value in event.changes.items())
        return f"step {event.step}: {changes}"
    if isinstance(event, Warning):
        return f"warning: {event.message}"
    if isinstance(event, RunFailed):
        advice = f" ({event.advice})" if event.advice else ""
        return f"failed: {event.message}{advice}"
    if isinstance(event, StateChanged) and event.state == "stopping":
        return f"stopping: {event.reason or 'asked to stop'}; saving last.pt"
    return None


class RichReporter:
    """A live progress bar on a terminal; epoch lines scroll above it. No refresh thread: the display is
    redrawn when an event arrives, so it never competes with training for the interpreter. A line printed
    redraws the bar with it; progress alone redraws it at most every REDRAW_EVERY_S (a run of tiny epochs sends
    hundreds of events a second, and each redraw of the bar cost about a millisecond)."""

    REDRAW_EVERY_S = 0.1

    def __init__(self, console: Any, clock: Callable[[], float] = time.monotonic) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = console
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[metrics]}"),
            TimeRemainingColumn(),
            console=console,
            auto_refresh=False,
            transient=True,
        )
        self.task = None
        self.epochs = 0
        self._clock = clock
        self._drawn_at = float("-inf")

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.epochs = event.epochs
            self._print(literal(event.run_id, "bold"), f": {event.preset} on {event.device} ({event.device_name}), "
                                                         f"{event.parameters:,} parameters, {event.total_steps} steps"
                                                         f"{threads_note(event)}")
            self._print(f"run folder: {event.run_dir}")
            self.progress.start()
            self.task = self.progress.add_task("train", total=event.total_steps, completed=event.start_step,
                                               epoch=f"{event.start_epoch}/{event.epochs}", metrics="")
            self._redraw()
        elif isinstance(event, Progress) and self.task is not None:
            accuracy = f"  acc {fmt.percent(event.train_accuracy)}" if event.train_accuracy is not None else ""
            self.progress.update(self.task, completed=event.step, epoch=f"{event.epoch}/{self.epochs}",
                                 metrics=f"loss {fmt.number(event.train_loss)}{accuracy}  {event.samples_per_s:,.0f} "
                                         f"samples/s")
            if self._clock() - self._drawn_at >= self.REDRAW_EVERY_S:
                self._redraw()
        elif isinstance(event, EpochEnded):
            best = literal(" (best)" if event.is_best else "", "green")
            self._print(f"epoch {event.epoch}/{self.epochs}  {fmt.metrics_text(event.train)}  "
                        f"{fmt.metrics_text(event.val)}  lr {fmt.number(event.lr)}", best)
        elif isinstance(event, RunFinished):
            self.progress.stop()
        else:
            line = event_line(event)
            if line:
                self._print(line)

    def _redraw(self) -> None:
        self.progress.refresh()
        self._drawn_at = self._clock()

    def _print(self, *parts: Any) -> None:
        """Text from the run (ids, paths, messages) as written: never read as markup, control characters
        escaped. Printing above the live bar redraws the bar as it is now."""
        from rich.text import Text

        self.console.print(Text.assemble(*(part if isinstance(part, Text) else literal(part) for part in parts)),
                           highlight=False)
        self._drawn_at = self._clock()


class JsonReporter:
    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, event: Event) -> None:
        print(json.dumps(event.to_dict()), file=self.out, flush=True)


def print_summary(result: RunFinished, out: TextIO) -> None:
    but = ", but last.pt could not be written" if result.last_unsaved else ""
    lines = [f"{result.state}{but}: {result.where()}, in {fmt.duration(result.elapsed_s)}"]
    if result.message:
        lines.append(f"  {result.message}")
    if result.best:
        lines.append(f"  best (epoch {result.best_epoch}): {fmt.metrics_text(result.best)}")
    if result.last:
        lines.append(f"  last: {fmt.metrics_text(result.last)}")
    if result.unsaved:
        lines.append(f"  {result.unsaved_note()}")
    if result.checkpoint:
        lines.append(f"  checkpoint: {result.checkpoint}")
        lines.append(f"  continue:   tui-trainer --headless --resume {result.checkpoint}")
    print("\n".join(printable(line) for line in lines), file=out, flush=True)


def on_run_started(call: Callable[[], object]) -> Callable[[Event], None]:
    """A listener that calls `call` when the run has set up and starts training (RunStarted)."""
    def listener(event: Event) -> None:
        if isinstance(event, RunStarted):
            call()

    return listener


def make_reporter(options: LaunchOptions, out: TextIO) -> Callable[[Event], None]:
    if options.json:
        return JsonReporter(out)
    if out.isatty():
        from rich.console import Console

        return RichReporter(Console(file=out))
    return PlainReporter(out)


def run_headless(options: LaunchOptions, out: TextIO | None = None) -> int:
    """Train in this process, in the foreground: the shell's signals save and stop it (under torchrun, each
    rank runs this; rank 0 holds the run folder, its record and its control socket)."""
    from tui_trainer.engine.distributed import from_environment
    from tui_trainer.runs.host import RunHost
    from tui_trainer.runs.hosting import Hosting

    out = out or sys.stdout
    setup_file_logging()
    parallel = from_environment()
    process_gc.skip_pass_at_exit()
    try:
        request = options.request
        with process_gc.RunCollection() as collection:
            host = RunHost(request.config(), Hosting.shell(parallel.world_size), resume_from=request.resume,
                           listeners=[make_reporter(options, out), on_run_started(collection.training_started)])
            result = host.run()
    except UserError as error:
        return report(error)
    except KeyboardInterrupt:
        print("tui-trainer: interrupted; the last checkpoint on disk is intact", file=sys.stderr)
        return signal_exit(signal.SIGINT)
    except Exception as error:  # a fault of ours while setting up: one line here, the traceback in the log
        log.exception("the run could not be set up")
        return report(error)
    if not options.json and parallel.is_main:
        print_summary(result, out)
    return host.exit_code(result)
