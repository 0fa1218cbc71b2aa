"""Detached runs the app starts and loses: the setup screen's Detach switch and Processes field, loading a
checkpoint while attached (a new detached run, waiting paused), and an engine killed under the dashboard
(shown as lost, with its exit status and last checkpoint)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Static, Switch

from tests.ui.conftest import driving, footer_actions, make_app, press, showing, wait_for
from tests.ui.remote_helpers import attach_app, cleaned, launch, state
from tui_trainer.runs.registry import read_run_info
from tui_trainer.ui.screens.checkpoints import LoadPanel, SavePanel
from tui_trainer.ui.screens.dashboard import DashboardScreen
from tui_trainer.ui.screens.leave import LeaveModal
from tui_trainer.ui.screens.runs import RunsPanel
from tui_trainer.ui.socket_handle import SocketHandle

pytestmark = pytest.mark.slow


@pytest.fixture
def folder(tmp_path):
    with cleaned(tmp_path / "checkpoints") as folder:
        yield folder


def field_error(app, name: str) -> str:
    error = app.setup_screen.query_one(f"#error-{name}", Static)
    return str(error.render()) if error.display else ""


async def test_the_detach_switch_starts_a_detached_run_and_a_load_goes_on_detached(folder):
    app = make_app(folder)
    async with driving(app) as pilot:
        setup = app.setup_screen
        await wait_for(pilot, lambda: setup.base is not None, "the preset")
        switch = setup.query_one("#detach", Switch)
        assert not switch.value, "in the app by default"
        processes = setup.query_one("#processes", Input)
        processes.value = "0"
        await wait_for(pilot, lambda: field_error(app, "processes"), "the processes error")
        assert field_error(app, "processes") == "processes: given 0; allowed: a whole number from 1 to 1024"
        await pilot.press("ctrl+r")
        assert app.handle is None and app.focused is processes
        processes.value = "2"
        await wait_for(pilot, lambda: switch.value and switch.disabled, "more than one process to mean detached")
        hint = setup.query_one("#detach-hint", Static)
        assert "2 processes under torchrun" in str(hint.render())
        processes.value = "1"
        await wait_for(pilot, lambda: not switch.disabled and not field_error(app, "processes"), "one process")
        switch.value = False
        switch.focus()
        await pilot.press("space")
        assert switch.value
        await wait_for(pilot, lambda: str(hint.render()).startswith("on: trains in a background process"), "the hint")

        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.handle, SocketHandle) and app.handle.view.run_id
                       and app.handle.view.step > 0, "the detached run on the dashboard", timeout=90)
        first = app.handle
        run_dir = Path(first.run_dir)
        info = read_run_info(run_dir)
        assert info.detached and info.pid != os.getpid() and state(run_dir) == "running"

        press(app, "s")
        await wait_for(pilot, lambda: showing(app, SavePanel), "the save panel")
        app.screen.query_one("#save-name", Input).value = "here"
        await pilot.pause(0.05)
        press(app, "enter")
        saved = run_dir / "here.pt"
        await wait_for(pilot, lambda: saved.is_file() and isinstance(app.screen, DashboardScreen), "here.pt")

        press(app, "l")
        await wait_for(pilot, lambda: showing(app, LoadPanel) and str(saved) in app.screen.infos,
                       "the checkpoint in the load panel")
        table = app.screen.query_one("#load-table", DataTable)
        table.move_cursor(row=table.get_row_index(str(saved)))
        await pilot.pause(0.05)
        press(app, "enter")
        await wait_for(pilot, lambda: app.handle is not first and isinstance(app.handle, SocketHandle)
                       and app.handle.view.run_id, "the checkpoint's run, attached", timeout=90)
        assert not first.active and first.result.state == "stopped" and (run_dir / "last.pt").is_file()
        loaded = app.handle
        assert read_run_info(loaded.run_dir).detached
        await wait_for(pilot, lambda: loaded.view.state == "paused" and state(loaded.run_dir) == "paused",
                       "the loaded run to wait paused")
        assert loaded.view.loss.count > 0, "the checkpoint's history is drawn"

        press(app, "q")
        await wait_for(pilot, lambda: showing(app, LeaveModal), "the question")
        press(app, "s")
        await wait_for(pilot, lambda: not app.is_running, "the app to exit", timeout=30)
    assert loaded.result is not None and loaded.result.state == "stopped"


async def test_a_killed_engine_shows_as_lost_with_its_exit_status(folder):
    info = launch(folder)
    app = attach_app(info.run_dir)
    async with driving(app) as pilot:
        await wait_for(pilot, lambda: app.handle is not None and app.handle.view.run_id
                       and app.handle.view.step > 0, "live steps")
        session = app.handle
        press(app, "s")
        await wait_for(pilot, lambda: showing(app, SavePanel), "the save panel")
        press(app, "enter")
        await wait_for(pilot, lambda: showing(app, DashboardScreen) and session.view.last_checkpoint,
                       "a checkpoint")
        checkpoint = session.view.last_checkpoint

        os.kill(info.pid, signal.SIGKILL)
        await wait_for(pilot, lambda: session.view.state == "lost", "the lost state", timeout=20)
        status = str(app.dashboard.status.render())
        log = "\n".join(app.dashboard.log_view.texts)
        assert "Lost" in status and app.is_running
        assert "killed by SIGKILL" in log and checkpoint in log
        await wait_for(pilot, lambda: footer_actions(app).get("pause") is False, "pause dimmed on a lost run")
        assert footer_actions(app)["save"] is False and footer_actions(app)["app.runs"]

        press(app, "r")
        await wait_for(pilot, lambda: showing(app, RunsPanel) and app.screen.infos, "the runs")
        table = app.screen.query_one("#runs-table", DataTable)
        assert "lost (killed by SIGKILL)" in map(str, table.get_row(info.run_dir))
        press(app, "escape")
        await wait_for(pilot, lambda: showing(app, DashboardScreen), "the dashboard")
        press(app, "q")
        await wait_for(pilot, lambda: not app.is_running, "the app to exit without asking")
