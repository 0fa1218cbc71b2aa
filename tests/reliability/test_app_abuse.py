"""The app under abuse while it trains: resize storms from 200x60 down to 40x12 and back, a long stretch
of random keys, and loading a checkpoint while a save is still being written. No crash, no hung thread,
and the run still saves last.pt when the user quits.

The storms and the keys drive scripted runs that step by themselves (tests/ui/fake_handle.py), as busy as a
tiny real run and never done; loading while a save is written runs once on a real run, for the order in which
the engine writes the two files, and once per way in on a scripted one."""

from __future__ import annotations

import random
import shutil
import threading
from collections import Counter
from pathlib import Path

import pytest
import torch
from textual.events import Resize
from textual.geometry import Size
from textual.widgets import DataTable

from tests.reliability.app_helpers import Tally
from tests.ui.conftest import (  # noqa: F401
    _no_training_thread_left,
    driving,
    make_app,
    palette_offers,
    press,
    scripted_app,
    showing,
    shown,
    start_training,
    trained_checkpoint,
    wait_for,
)
from tests.ui.fake_handle import ScriptedHandles
from tui_trainer.engine.checkpoints import load_checkpoint
from tui_trainer.engine.controls import Save, Stop
from tui_trainer.ui.app import TrainerApp
from tui_trainer.ui.screens.checkpoints import LoadPanel, SavePanel
from tui_trainer.ui.screens.confirm import ConfirmModal
from tui_trainer.ui.screens.dashboard import DashboardScreen
from tui_trainer.ui.screens.help import HelpModal
from tui_trainer.ui.screens.setup import SetupScreen
from tui_trainer.ui.screens.tweaks import TweakPanel

TALLY = Tally("test_app_abuse")


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    # Random keys type relative folder names into the panels: they land here, not in the working tree.
    monkeypatch.chdir(tmp_path)
    return tmp_path / "checkpoints"


def alive(app: TrainerApp) -> bool:
    return app.is_running and app._exception is None and app.return_code is None


async def quit_saving(app: TrainerApp, pilot) -> None:
    """Ctrl+Q, and yes when asked; waits for the app to exit."""
    press(app, "ctrl+q")
    await wait_for(pilot, lambda: not app.is_running or (isinstance(app.screen, ConfirmModal)
                                                           and app.screen.id == "quit-confirm"),
                   "the quit confirmation", timeout=20)
    if app.is_running:
        press(app, "y")
    await wait_for(pilot, lambda: not app.is_running, "the app to exit", timeout=40)


def assert_every_scripted_run_saved(app: TrainerApp, handles: ScriptedHandles) -> None:
    """Every run ended on a stop that saves last.pt (a scripted run writes no file)."""
    assert app._exception is None and app.return_code in (None, 0)
    assert app.handles == handles.made
    for run in handles.made:
        assert not run.active, "a training thread outlived the app"
        assert run.result is not None and run.result.checkpoint == f"{run.run_dir}/last.pt", run.result
        assert isinstance(run.engine.commands[-1], Stop) and run.engine.commands[-1].save


async def start_stepping(app: TrainerApp, handles: ScriptedHandles, pilot) -> None:
    """Ctrl+R, then wait until the run's steps show (it steps by itself)."""
    await wait_for(pilot, lambda: app.setup_screen.base is not None, "the preset to load")
    press(app, "ctrl+r")
    run = await shown(app, handles, pilot)
    await wait_for(pilot, lambda: run.view.step > 0, "steps on screen")


def assert_every_run_saved(app: TrainerApp) -> None:
    assert app._exception is None and app.return_code in (None, 0)
    for session in app.handles:
        assert not session.active, "a training thread outlived the app"
        if session.result is not None and session.view.run_dir:
            last = Path(session.view.run_dir) / "last.pt"
            assert load_checkpoint(last)["meta"]["step"] >= 0, last


# ---------------------------------------------------------------- resize storms

SIZES = [(200, 60), (160, 48), (120, 40), (100, 30), (80, 24), (64, 20), (50, 16), (40, 12)]


def storm(rounds: int, seed: int) -> list[tuple[int, int]]:
    """Down from 200x60 to 40x12 and back, rounds times, with random sizes in between."""
    rng = random.Random(seed)
    sizes: list[tuple[int, int]] = []
    for _ in range(rounds):
        sizes += SIZES + SIZES[::-1]
        sizes += [(rng.randint(40, 200), rng.randint(12, 60)) for _ in range(4)]
    return sizes


async def resize(app: TrainerApp, pilot, width: int, height: int, settle: float) -> None:
    """What pilot.resize_terminal does, without its wait for an idle moment (training never is)."""
    size = Size(width, height)
    app._driver._size = size
    app.post_message(Resize(size, size))
    await pilot.pause(settle)


async def test_a_resize_storm_while_training(folder):
    app, handles = scripted_app(folder, steps_by_itself=True)
    async with driving(app, size=(200, 60)) as pilot:
        await start_stepping(app, handles, pilot)
        session = app.handle
        sizes = storm(rounds=2, seed=7)
        for index, (width, height) in enumerate(sizes):
            with TALLY.attempt("8 abuse", "resize storm: sizes"):
                # Mostly faster than a frame; every few sizes long enough for the charts to redraw.
                await resize(app, pilot, width, height, 0.3 if index % 10 == 0 else 0.005)
                assert alive(app), (index, width, height)
        with TALLY.attempt("8 abuse", "resize storm: panels at 40x12, then pilot.resize_terminal"):
            await resize(app, pilot, 40, 12, 0.2)
            for key, panel in (("s", SavePanel), ("e", TweakPanel), ("question_mark", HelpModal)):
                press(app, key)
                await wait_for(pilot, lambda panel=panel: isinstance(app.screen, panel), f"{panel.__name__}")
                await pilot.pause(0.1)
                press(app, "escape")
                await wait_for(pilot, lambda: showing(app, DashboardScreen), "the dashboard")
            await pilot.resize_terminal(200, 60)
            await pilot.resize_terminal(120, 40)
            assert app.size == Size(120, 40) and alive(app)
            step = session.engine.step
            await wait_for(pilot, lambda: session.engine.step > step + 10, "training to go on")
            await wait_for(pilot, lambda: session.view.step > step, "the screen to follow")
            assert "Running" in str(app.dashboard.status.render())
        with TALLY.attempt("8 abuse", "resize storm: last.pt on quit"):
            await quit_saving(app, pilot)
            assert_every_scripted_run_saved(app, handles)
            assert session.result.state == "stopped"


# ---------------------------------------------------------------- random keys

LEAVING = {"ctrl+q", "ctrl+c", "q", "ctrl+p"}
"""Keys that end the app (or reach Quit through the command palette): the stretch would end early;
quitting is tested on its own."""


def bound_keys() -> set[str]:
    screens = [TrainerApp, DashboardScreen, SetupScreen, ConfirmModal, HelpModal, SavePanel, LoadPanel, TweakPanel]
    keys = set()
    for screen in screens:
        for binding in screen.BINDINGS:
            keys.update(key.strip() for key in binding.key.split(","))
    return keys


KEYS = sorted((bound_keys() | set("abcdefghijklmnoprstuvwxyz0123456789") | {
    "escape", "enter", "tab", "shift+tab", "up", "down", "left", "right", "space", "backspace", "delete",
    "home", "end", "pageup", "pagedown", "full_stop", "minus"}) - LEAVING)
BOUND = sorted(bound_keys() - LEAVING)
"""Half the keys come from here, so that the stretch reaches the panels, a new run and a load."""
RANDOM_KEYS = 250


async def test_random_keys_for_a_long_stretch_while_training(folder):
    app, handles = scripted_app(folder, steps_by_itself=True)
    rng = random.Random(2024)
    typed: list[str] = []
    screens: Counter[str] = Counter()
    async with driving(app, size=(100, 32)) as pilot:
        await start_stepping(app, handles, pilot)
        for _ in range(RANDOM_KEYS):
            key = rng.choice(BOUND if rng.random() < 0.5 else KEYS)
            typed.append(key)
            with TALLY.attempt("8 abuse", "random keys: keys"):
                press(app, key)
                await pilot.pause(0.01 if rng.random() < 0.9 else 0.1)
                assert alive(app), typed[-20:]
            screens[type(app.screen).__name__] += 1
        assert len(screens) >= 3, screens
        with TALLY.attempt("8 abuse", "random keys: every run saved on quit"):
            assert alive(app)
            await quit_saving(app, pilot)
            assert_every_scripted_run_saved(app, handles)
    print(f"{len(typed)} random keys; screens after each: {dict(screens)}; "
          f"runs: {[session.result.state for session in app.handles if session.result]}")


# ---------------------------------------------------------------- loading while a save is pending


@pytest.fixture
def slow_save(monkeypatch):
    """torch.save of a manual checkpoint blocks until the test opens the gate (at most 30 s)."""
    gate, writing = threading.Event(), threading.Event()
    real_save = torch.save

    def save(obj, file, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("meta", {}).get("reason") == "manual" and not gate.is_set():
            writing.set()
            gate.wait(30)
        return real_save(obj, file, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    return gate, writing


async def save_earlier(app, pilot, gate: threading.Event) -> Path:
    """A first manual save, written at once, for the load panel to list."""
    gate.set()
    press(app, "s")
    await wait_for(pilot, lambda: showing(app, SavePanel), "the save panel")
    app.screen.query_one("#save-name").value = "earlier"
    await pilot.pause(0.05)
    press(app, "enter")
    earlier = Path(app.handle.view.run_dir) / "earlier.pt"
    await wait_for(pilot, lambda: earlier.is_file() and isinstance(app.screen, DashboardScreen), "earlier.pt")
    gate.clear()
    return earlier


async def choose_in_load_panel(app, pilot, path: Path) -> None:
    await wait_for(pilot, lambda: showing(app, LoadPanel) and str(path) in app.screen.infos,
                   "the listing")
    table = app.screen.query_one("#load-table", DataTable)
    row = table.get_row_index(str(path))
    table.move_cursor(row=row)
    await wait_for(pilot, lambda: table.cursor_row == row, "the cursor on the checkpoint")
    press(app, "enter")


async def test_loading_while_a_save_is_being_written(folder, slow_save):
    """End to end: the engine writes the pending save before it stops for the load, and both files load."""
    gate, writing = slow_save
    app = make_app(folder)
    with TALLY.attempt("8 abuse", "load while a save is pending: a real run"):
        async with driving(app) as pilot:
            await start_training(app, pilot)
            first = app.handle
            earlier = await save_earlier(app, pilot, gate)
            press(app, "s")
            await wait_for(pilot, lambda: showing(app, SavePanel), "the save panel")
            save_panel = app.screen
            press(app, "enter")
            await wait_for(pilot, lambda: save_panel.pending is not None, "the save to be sent")
            pending = Path(save_panel.pending)
            await wait_for(pilot, writing.is_set, "the engine to be writing the save")
            press(app, "escape")
            await wait_for(pilot, lambda: showing(app, DashboardScreen), "the dashboard")
            press(app, "l")
            await choose_in_load_panel(app, pilot, earlier)
            await wait_for(pilot, lambda: "saving last.pt" in app.dashboard.note or app.handle is not first,
                           "the old run to be stopping")
            assert first.active, "the run waits for its save before it stops"
            gate.set()
            await wait_for(pilot, lambda: app.handle is not first and app.handle.view.state == "paused",
                           "the loaded run, paused", timeout=30)
            loaded = app.handle
            assert loaded.resume_from == str(earlier)
            assert not first.active and first.result.state == "stopped"
            manual = load_checkpoint(pending)
            last = load_checkpoint(Path(first.view.run_dir) / "last.pt")
            assert manual["meta"]["reason"] == "manual" and manual["meta"]["step"] <= last["meta"]["step"]
            assert f"Saved manual checkpoint {pending}" in "\n".join(app.dashboard.log_view.texts)
            press(app, "space")
            step = loaded.trainer.step
            await wait_for(pilot, lambda: loaded.trainer.step > step, "the loaded run to train")
            await quit_saving(app, pilot)
        assert_every_run_saved(app)


@pytest.mark.parametrize("how", ["escape, then l", "command palette over the save panel"])
async def test_loading_while_a_save_is_pending_closes_the_save_panel_once_the_run_has_saved(
        folder, how, trained_checkpoint):  # noqa: F811 (the fixture imported above)
    app, handles = scripted_app(folder)
    with TALLY.attempt("8 abuse", f"load while a save is pending: {how}"):
        async with driving(app) as pilot:
            await wait_for(pilot, lambda: app.setup_screen.base is not None, "the preset to load")
            await pilot.press("ctrl+r")
            first = await shown(app, handles, pilot)
            Path(first.run_dir).mkdir(parents=True)
            earlier = Path(first.run_dir) / "earlier.pt"
            shutil.copy(trained_checkpoint, earlier)  # what an earlier save of this run wrote
            with first.frozen():  # the engine is busy: the save waits, and so will the stop
                await pilot.press("s")
                await wait_for(pilot, lambda: showing(app, SavePanel), "the save panel")
                save_panel = app.screen
                await pilot.press("enter")
                await wait_for(pilot, lambda: save_panel.pending is not None, "the save to be sent")
                pending = save_panel.pending
                if how == "escape, then l":
                    await pilot.press("escape")
                    await wait_for(pilot, lambda: showing(app, DashboardScreen), "the dashboard")
                    await pilot.press("l")
                else:
                    await pilot.press("ctrl+p")
                    await wait_for(pilot, lambda: app.screen.__class__.__name__ == "CommandPalette", "the palette")
                    await pilot.press(*["space" if key == " " else key for key in "load checkpoint"])
                    await wait_for(pilot, lambda: palette_offers(app, "Load checkpoint"), "the palette's match")
                    await pilot.press("enter")
                await choose_in_load_panel(app, pilot, earlier)
                await wait_for(pilot, lambda: first.stop_requested, "the old run told to stop")
                assert "saving last.pt, then loading earlier.pt" in app.dashboard.note
                assert first.active and app.handle is first, "the run waits for its save before it stops"
            loaded = await shown(app, handles, pilot, nth=2)
            await wait_for(pilot, lambda: loaded.view.state == "paused", "the loaded run, paused")
            assert loaded.resume_from == str(earlier)
            assert first.engine.commands == [Save(path=pending), Stop(save=True, reason=f"loading {earlier}")]
            assert not first.active and first.result.state == "stopped"
            assert not any(isinstance(screen, SavePanel) for screen in app.screen_stack), "a stale save panel"
            assert showing(app, DashboardScreen)
            assert f"Saved manual checkpoint {pending}" in "\n".join(app.dashboard.log_view.texts)
            await pilot.press("space")
            await wait_for(pilot, lambda: loaded.view.state == "running", "the loaded run to train")
            await quit_saving(app, pilot)
        assert_every_scripted_run_saved(app, handles)
