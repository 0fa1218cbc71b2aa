"""Snapshots of the app's screens, panels and modals at 80x24 and 120x40 (a few also without colour),
driven through scripted runs: the setup form with a field flagged, the dashboard running, paused (by the
user, and on a fault), finished, and each panel and question over it.

A test fails when the screen draws differently from its SVG in __snapshots__/; the failure report
(snapshot_report.html) shows both. After a change meant to alter a screen, look at the report, then accept
the new drawings with `pytest tests/ui/snapshots --snapshot-update`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static

from tests.ui.conftest import footer_actions, showing, wait_for
from tests.ui.snapshots.scripted import (
    SnapshotApp,
    SnapshotHandles,
    dashboard_drawn,
    open_run,
    settle,
    setup_ready,
    snapshot_app,
)
from tui_trainer.engine.events import RunFailed, StateChanged
from tui_trainer.ui.lifecycle import Phase
from tui_trainer.ui.screens.checkpoints import LoadPanel, SavePanel
from tui_trainer.ui.screens.confirm import ConfirmModal
from tui_trainer.ui.screens.help import HelpModal
from tui_trainer.ui.screens.leave import LeaveModal
from tui_trainer.ui.screens.runs import RunsPanel
from tui_trainer.ui.screens.tweaks import TweakPanel

pytest.importorskip("pytest_textual_snapshot", reason="snapshot tests need the dev extra (pytest-textual-snapshot)")
pytestmark = pytest.mark.snapshot

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]
RunBefore = Callable[[Pilot], Awaitable[None]]


def shot(snap_compare, app: SnapshotApp, size: tuple[int, int], run_before: RunBefore,
         drawn: list[str] | None = None) -> bool:
    """snap_compare once run_before has brought the app to its state; `drawn` gets the screen as it was."""
    async def then_settle(pilot: Pilot) -> None:
        await run_before(pilot)
        await settle(pilot)
        if drawn is not None:
            drawn.append(pilot.app.export_screenshot())

    return snap_compare(app, terminal_size=size, run_before=then_settle)


def colours(svg: str) -> set[str]:
    """The colours a screenshot paints with, less Rich's default text colour (in every SVG's style sheet)."""
    return set(re.findall(r"fill: (#[0-9a-f]{6})", svg)) - {"#c5c8c6"}


def grey(colour: str) -> bool:
    return colour[1:3] == colour[3:5] == colour[5:7]


def without_colour(snap_compare, monkeypatch, app_and_run_before) -> None:
    """A snapshot at 80x24 with NO_COLOR set (Textual reads it when the app is built): greys only."""
    monkeypatch.setenv("NO_COLOR", "1")
    app, run_before = app_and_run_before()
    drawn: list[str] = []
    assert shot(snap_compare, app, (80, 24), run_before, drawn)
    assert app.no_color and drawn
    assert all(grey(colour) for colour in colours(drawn[0])), sorted(colours(drawn[0]))


async def open_modal(pilot: Pilot, key: str, screen_type: type) -> None:
    await pilot.press(key)
    await wait_for(pilot, lambda: showing(pilot.app, screen_type), screen_type.__name__)


# ---------------------------------------------------------------- the setup screen


def bad_lr(app: SnapshotApp) -> RunBefore:
    async def run_before(pilot: Pilot) -> None:
        await setup_ready(pilot)
        setup = app.setup_screen
        setup.query_one("#lr", Input).focus()
        await pilot.press(*["backspace"] * 3, "0", ".", "o", "1")  # a letter o for a zero
        await wait_for(pilot, lambda: setup.query_one("#error-lr", Static).display, "the lr error")

    return run_before


@pytest.mark.parametrize("size", SIZES)
def test_setup_screen_with_a_field_error(snap_compare, size):
    app, _ = snapshot_app()
    assert shot(snap_compare, app, size, bad_lr(app))


def test_setup_screen_without_colour(snap_compare, monkeypatch):
    def build():
        app, _ = snapshot_app()
        return app, bad_lr(app)

    without_colour(snap_compare, monkeypatch, build)


# ---------------------------------------------------------------- the dashboard


def running(handles: SnapshotHandles) -> RunBefore:
    async def run_before(pilot: Pilot) -> None:
        await open_run(pilot, handles)

    return run_before


@pytest.mark.parametrize("size", SIZES)
def test_dashboard_running(snap_compare, size):
    app, handles = snapshot_app()
    assert shot(snap_compare, app, size, running(handles))


def test_dashboard_running_without_colour(snap_compare, monkeypatch):
    def build():
        app, handles = snapshot_app()
        return app, running(handles)

    without_colour(snap_compare, monkeypatch, build)


@pytest.mark.parametrize("size", SIZES)
def test_dashboard_paused_by_the_user_offers_resume(snap_compare, size):
    app, handles = snapshot_app()

    async def run_before(pilot: Pilot) -> None:
        run = await open_run(pilot, handles)
        await pilot.press("space")
        await wait_for(pilot, lambda: run.view.state == "paused" and "resume" in footer_actions(app), "paused")
        await dashboard_drawn(pilot)

    assert shot(snap_compare, app, size, run_before)


@pytest.mark.parametrize("size", SIZES)
def test_dashboard_paused_on_a_fault_shows_the_banner(snap_compare, size):
    app, handles = snapshot_app()

    async def run_before(pilot: Pilot) -> None:
        run = await open_run(pilot, handles, last_step=31)
        run.play(RunFailed("training loss is nan at step 31", "non_finite",
                           "lower the learning rate, set grad_clip, or continue from the last good checkpoint"),
                 StateChanged("paused", "training loss is nan at step 31"))
        await wait_for(pilot, lambda: app.dashboard.fault.display and "resume" in footer_actions(app), "the fault")
        await dashboard_drawn(pilot)

    assert shot(snap_compare, app, size, run_before)


@pytest.mark.parametrize("size", SIZES)
def test_dashboard_finished_dims_the_run_keys(snap_compare, size):
    app, handles = snapshot_app()

    async def run_before(pilot: Pilot) -> None:
        run = await open_run(pilot, handles, last_step=50)
        run.finish()
        await wait_for(pilot, lambda: app.runs.phase is Phase.ENDED, "the end of the run")
        await wait_for(pilot, lambda: footer_actions(app).get("save") is False, "the run keys dimmed")
        await dashboard_drawn(pilot)

    assert shot(snap_compare, app, size, run_before)


# ---------------------------------------------------------------- panels and modals over a run


def over_a_run(handles: SnapshotHandles, key: str, screen_type: type) -> RunBefore:
    async def run_before(pilot: Pilot) -> None:
        await open_run(pilot, handles)
        await open_modal(pilot, key, screen_type)

    return run_before


@pytest.mark.parametrize("size", SIZES)
def test_save_panel(snap_compare, size):
    app, handles = snapshot_app()
    assert shot(snap_compare, app, size, over_a_run(handles, "s", SavePanel))


@pytest.mark.parametrize("size", SIZES)
def test_tweak_panel(snap_compare, size):
    app, handles = snapshot_app()
    assert shot(snap_compare, app, size, over_a_run(handles, "e", TweakPanel))


@pytest.mark.parametrize("size", SIZES)
def test_help_on_the_dashboard(snap_compare, size):
    app, handles = snapshot_app()
    assert shot(snap_compare, app, size, over_a_run(handles, "question_mark", HelpModal))


@pytest.mark.parametrize("size", SIZES)
def test_quit_confirmation(snap_compare, size):
    app, handles = snapshot_app()
    assert shot(snap_compare, app, size, over_a_run(handles, "ctrl+q", ConfirmModal))


def test_quit_confirmation_without_colour(snap_compare, monkeypatch):
    def build():
        app, handles = snapshot_app()
        return app, over_a_run(handles, "ctrl+q", ConfirmModal)

    without_colour(snap_compare, monkeypatch, build)


@pytest.mark.parametrize("size", SIZES)
def test_leave_or_stop_for_a_background_run(snap_compare, size):
    app, handles = snapshot_app(in_thread=False, detach=True)

    async def run_before(pilot: Pilot) -> None:
        await open_run(pilot, handles)
        assert not handles.last.ends_with_app
        await open_modal(pilot, "ctrl+q", LeaveModal)

    assert shot(snap_compare, app, size, run_before)


# ---------------------------------------------------------------- panels over the setup screen


def listed(screen_type: type, table_id: str) -> RunBefore:
    async def run_before(pilot: Pilot) -> None:
        await setup_ready(pilot)
        await open_modal(pilot, "l" if screen_type is LoadPanel else "r", screen_type)
        panel = pilot.app.screen
        await wait_for(pilot, lambda: panel.infos and panel.query_one(table_id, DataTable).row_count,
                       "the listed runs")

    return run_before


@pytest.mark.parametrize("size", SIZES)
def test_load_panel_lists_two_runs_checkpoints(snap_compare, size, two_runs):
    app, _ = snapshot_app()
    assert shot(snap_compare, app, size, listed(LoadPanel, "#load-table"))


@pytest.mark.parametrize("size", SIZES)
def test_runs_panel_lists_two_runs(snap_compare, size, two_runs):
    app, _ = snapshot_app()
    assert shot(snap_compare, app, size, listed(RunsPanel, "#runs-table"))


@pytest.mark.parametrize("size", SIZES)
def test_trust_question_for_a_checkpoint_that_imports_code(snap_compare, size, untrusted_checkpoint):
    app, handles = snapshot_app(resume=untrusted_checkpoint)

    async def run_before(pilot: Pilot) -> None:
        await wait_for(pilot, lambda: showing(app, ConfirmModal), "the trust question")
        await setup_ready(pilot)

    assert shot(snap_compare, app, size, run_before)
    assert not handles.made, "nothing runs before the user trusts the file"

