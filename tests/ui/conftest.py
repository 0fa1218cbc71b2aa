"""Helpers for driving the app with Pilot, on scripted runs (`scripted_app`: tests/ui/fake_handle.py) or on
a real tiny training run (`make_app`, for the few tests whose point is the engine or the transport).

While a run goes on the process is never idle, so tests send keys with `app.simulate_key` and wait on
conditions with short pauses, never on fixed sleeps; every run is stopped and its thread joined before
the test ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from tests.ui.fake_handle import ScriptedHandles, ScriptedRun
from tui_trainer.launch import LaunchOptions
from tui_trainer.ui.app import TrainerApp
from tui_trainer.ui.screens.dashboard import DashboardScreen

LONG_RUN = {
    "epochs": 100_000,
    "checkpoint.every_epochs": 0,
    "checkpoint.save_best": False,
}
"""A tiny run that lasts until the test stops it, without a checkpoint per epoch."""


def make_app(folder: Path, preset: str = "iris-linear", start: bool = False, in_thread: bool = True,
             **overrides: Any) -> TrainerApp:
    """The app on a preset. The screens and keys behave the same whichever way a run trains; these tests
    train in the app's thread (--in-thread) by default, which starts in a fraction of the time and lets a
    test reach into the trainer to inject a fault. test_engine_process.py covers the default engine process."""
    options = LaunchOptions(preset=preset, start=start, in_thread=in_thread,
                            overrides={"checkpoint.dir": str(folder), **LONG_RUN, **overrides})
    return TrainerApp(options, drain_interval_s=0.05, chart_interval_s=0.2, device_interval_s=0.3,
                      exit_grace_s=20)


def scripted_app(folder: Path, *, in_thread: bool = True, preset: str | None = "iris-linear",
                 steps_by_itself: bool = False, **options: Any) -> tuple[TrainerApp, ScriptedHandles]:
    """The app on a preset whose runs are scripted (no training); options are LaunchOptions' (detach, attach,
    start ...). in_thread: runs start as the app's thread would train them, else as processes of their own."""
    handles = ScriptedHandles(str(folder), steps_by_itself=steps_by_itself)
    overrides = {"checkpoint.dir": str(folder), **options.pop("overrides", {})}
    app = TrainerApp(LaunchOptions(preset=preset, in_thread=in_thread, overrides=overrides, **options),
                     handles=handles, drain_interval_s=0.02, chart_interval_s=0.2, device_interval_s=0.3,
                     exit_grace_s=20)
    return app, handles


async def start_scripted(app: TrainerApp, handles: ScriptedHandles, pilot: Pilot) -> ScriptedRun:
    """Ctrl+R on the setup screen, then wait until the dashboard shows the scripted run (its RunStarted drawn)."""
    await wait_for(pilot, lambda: app.setup_screen.base is not None, "the preset to load")
    await pilot.press("ctrl+r")
    await shown(app, handles, pilot)
    return handles.last


async def shown(app: TrainerApp, handles: ScriptedHandles, pilot: Pilot, nth: int | None = None) -> ScriptedRun:
    """Wait until the dashboard shows the newest scripted run (or the nth made, from 1), its RunStarted drawn."""

    def run() -> ScriptedRun | None:
        if not handles.made or (nth is not None and len(handles.made) < nth):
            return None
        return handles.made[nth - 1] if nth is not None else handles.last

    await wait_for(pilot, lambda: run() is not None and app.handle is run() and app.handle.view.run_id
                   and showing(app, DashboardScreen), f"scripted run {nth or len(handles.made)} on the dashboard")
    return run()


def palette_offers(app: TrainerApp, title: str) -> bool:
    """The command palette on top has title highlighted, so that Enter runs it."""
    from textual.command import CommandList

    commands = app.screen.query(CommandList)
    index = commands.first().highlighted if commands else None
    return index is not None and title in str(commands.first().get_option_at_index(index).prompt)


def notified(app: TrainerApp, text: str) -> bool:
    """A toast holding text is on screen (or was, in this app)."""
    return any(text in str(note.message) for note in app._notifications)


async def wait_for(pilot: Pilot, condition: Callable[[], object], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await pilot.pause(0.05)


def showing(app: TrainerApp, screen_type: type) -> bool:
    """The top screen is a screen_type with its widgets mounted: a pushed screen is app.screen before its
    compose has run, so querying it at once can find nothing."""
    return isinstance(app.screen, screen_type) and app.screen.is_mounted


async def stop_all(app: TrainerApp) -> None:
    """Stop the app's own runs (each saves last.pt); a detached run is let go of, not stopped."""
    begun = [handle for handle in app.handles if handle.began.is_set()]
    for handle in begun:
        handle.leave("test over")
    for handle in begun:
        finished = await asyncio.to_thread(handle.finished.wait, 30)
        assert finished, "a training thread did not end"


@contextlib.asynccontextmanager
async def driving(app: TrainerApp, size: tuple[int, int] = (120, 40)) -> AsyncIterator[Pilot]:
    """run_test that always stops the app's runs and joins their threads, even when the test fails."""
    async with app.run_test(size=size) as pilot:
        try:
            yield pilot
        finally:
            await stop_all(app)


async def start_training(app: TrainerApp, pilot: Pilot, steps: int = 1) -> None:
    """Ctrl+R on the setup screen, then wait until the engine has done some steps."""
    await wait_for(pilot, lambda: app.setup_screen.base is not None, "the preset to load")
    await pilot.press("ctrl+r")
    await wait_for(pilot, lambda: app.handle is not None and app.handle.view.step >= steps,
                   f"{steps} training steps on screen", timeout=30)


def footer_actions(app: TrainerApp) -> dict[str, bool]:
    """The actions the footer and the keys offer now: True lit, False dimmed (absent: hidden)."""
    return {binding.action: enabled for (_, binding, enabled, _) in app.screen.active_bindings.values()}


def press(app: TrainerApp, *keys: str) -> None:
    """Keys while training runs (pilot.press would wait for an idle moment that never comes)."""
    for key in keys:
        app.simulate_key(key)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "checkpoints"


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real last.pt of a one-epoch iris-linear run, made once: a file for the load panel and --resume to read
    while the app drives scripted runs (copy it before changing it)."""
    from tests.reliability.app_helpers import good_checkpoint

    return good_checkpoint(tmp_path_factory.mktemp("trained"))


def write_run_json(folder: Path, run_id: str, **fields: Any) -> Path:
    """A run folder under folder with the run.json its run would have written; by default a live background run
    of this process (so that it is not taken for lost) that can be attached. Returns the run folder."""
    import os

    from tui_trainer.runs.registry import RunInfo, write_run_info

    run_dir = folder / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    values = dict(preset="iris-linear", state="running", pid=os.getpid(), started_at=time.time(), epoch=1, epochs=5,
                  step=4, total_steps=50, detached=True, attachable=True)
    write_run_info(RunInfo(run_id=run_id, run_dir=str(run_dir), **{**values, **fields}))
    return run_dir


@pytest.fixture(autouse=True)
def _no_training_thread_left():
    yield
    deadline = time.monotonic() + 10
    while any(thread.name.startswith("trainer") for thread in threading.enumerate()):
        assert time.monotonic() < deadline, "a training thread outlived its test"
        time.sleep(0.05)
