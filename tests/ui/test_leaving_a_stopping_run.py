"""Leaving the app while a detached run is saving and stopping: quitting asks nothing more (the run is
already told to stop), and the shell is told it stops, never that it "goes on in the background"."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

import pytest

from tests.ui.conftest import driving, footer_actions, press, showing, wait_for
from tests.ui.remote_helpers import attach_app, cleaned, launch, state, wait_until
from tui_trainer.ui.screens.dashboard import DashboardScreen
from tui_trainer.ui.screens.leave import LeaveModal
from tui_trainer.ui.screens.setup import SetupScreen
from tui_trainer.ui.socket_handle import SocketHandle

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def frozen(pid: int) -> Iterator[None]:
    """The engine stopped by SIGSTOP: a command sent meanwhile waits in its socket, so the run stays
    "stopping" for as long as the test needs."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@pytest.mark.parametrize("first", ["n", "ctrl+q"])
async def test_quitting_after_save_and_stop_says_the_run_stops(tmp_path, first):
    folder = tmp_path / "checkpoints"
    with cleaned(folder):
        info = launch(folder)
        app = attach_app(info.run_dir)
        async with driving(app) as pilot:
            await wait_for(pilot, lambda: isinstance(app.handle, SocketHandle) and app.handle.view.run_id
                           and showing(app, DashboardScreen), "the run's history")
            session = app.handle
            with frozen(info.pid):
                press(app, first)  # n: new run; ctrl+q: quit. Both ask, and "s" saves and stops the run
                await wait_for(pilot, lambda: showing(app, LeaveModal), "the question")
                press(app, "s")
                await wait_for(pilot, lambda: session.stop_requested, "the stop to go out")
                if first == "n":
                    press(app, "ctrl+q")
                    await pilot.pause(0.2)
                    assert not isinstance(app.screen, LeaveModal), "asked again whether to leave it running"
                press(app, "ctrl+q")  # again: leave now, without waiting for last.pt
                await wait_for(pilot, lambda: not app.is_running, "the app to exit")
        lines = app.runs.closing_lines()  # after the app has let go of its runs, as run_app prints them
        assert not any("goes on in the background" in line for line in lines), lines
        assert any(line.startswith(f"{info.run_id}: told to save last.pt and stop") for line in lines), lines
        # A loaded machine (CI) may take a while to resume the engine and write last.pt.
        wait_until(lambda: state(info.run_dir) == "stopped", "the run to save and stop by itself", timeout=90)


async def test_d_and_n_on_a_run_saving_and_stopping_ask_nothing_and_leave_it_stopping(tmp_path):
    folder = tmp_path / "checkpoints"
    with cleaned(folder):
        info = launch(folder)
        app = attach_app(info.run_dir)
        async with driving(app) as pilot:
            await wait_for(pilot, lambda: isinstance(app.handle, SocketHandle) and app.handle.view.run_id
                           and showing(app, DashboardScreen), "the run's history")
            session = app.handle
            with frozen(info.pid):
                press(app, "n")
                await wait_for(pilot, lambda: showing(app, LeaveModal), "the question")
                press(app, "s")
                await wait_for(pilot, lambda: session.stop_requested and showing(app, DashboardScreen),
                               "the stop to go out")
                await pilot.pause(0.1)
                shown = footer_actions(app)
                assert shown["detach"] is False, "a run that is stopping offers no detach"
                press(app, "d")
                press(app, "n")
                await wait_for(pilot, lambda: any("saving last.pt and stopping" in str(note.message)
                                                  for note in app._notifications), "n: what it does")
                assert showing(app, DashboardScreen), "d or n asked a question"
                assert not session.released, "d or n let go of a run that is stopping"
            await wait_for(pilot, lambda: showing(app, SetupScreen), "the setup screen once it has stopped",
                           timeout=30)
        assert session.result is not None and session.result.state == "stopped"
        first = app.runs.closing_lines()[0]
        assert first.startswith(f"{info.run_id}: stopped ") and "epoch" in first
