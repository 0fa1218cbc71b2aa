"""Leaving the app while a background run is saving and stopping: quitting asks nothing more (the run is
already told to stop), d and n ask nothing and leave it stopping, and the shell is told it stops, never that it
"goes on in the background". The app drives scripted runs (tests/ui/fake_handle.py), held "frozen" so that the
stop stays pending for as long as the test needs; what the shell is told is the socket handle's answer. One test
keeps a real detached run, stopped by SIGSTOP: told to stop as the app leaves, it still saves and stops by
itself once the app has gone."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

import pytest

from tests.ui.conftest import driving, footer_actions, notified, press, scripted_app, showing, shown, wait_for
from tests.ui.remote_helpers import attach_app, cleaned, launch, state, wait_until
from tui_trainer.engine.controls import Stop
from tui_trainer.ui.lifecycle import Lifecycle
from tui_trainer.ui.screens.dashboard import DashboardScreen
from tui_trainer.ui.screens.leave import LeaveModal
from tui_trainer.ui.screens.setup import SetupScreen
from tui_trainer.ui.socket_handle import SocketHandle


def attached(folder):
    """The app as `tui-trainer attach RUN` opens it, on a scripted background run."""
    return scripted_app(folder, preset=None, attach=str(folder / "iris-linear-20261201-120000"))


@pytest.mark.parametrize("first", ["n", "ctrl+q"])
async def test_quitting_after_save_and_stop_asks_nothing_more(folder, first):
    app, handles = attached(folder)
    with contextlib.ExitStack() as holding:  # frozen until the app has let go of it on the way out
        async with driving(app) as pilot:
            run = await shown(app, handles, pilot)
            holding.enter_context(run.frozen())
            await pilot.press(first)  # n: new run; ctrl+q: quit. Both ask, and "s" saves and stops the run
            await wait_for(pilot, lambda: showing(app, LeaveModal), "the question")
            await pilot.press("s")
            await wait_for(pilot, lambda: run.stop_requested, "the stop to go out")
            if first == "n":
                await pilot.press("ctrl+q")
                assert not isinstance(app.screen, LeaveModal), "asked again whether to leave it running"
                assert "saving last.pt before leaving" in app.dashboard.note
            await pilot.press("ctrl+q")  # again: leave now, without waiting for last.pt
            await wait_for(pilot, lambda: not app.is_running, "the app to exit")
            assert not run.released, "let go of before the app had closed"
    assert run.released and not run.goes_on, "a run told to stop is not one that goes on in the background"
    assert run.result is None and not run.engine.commands, "the stop was still on its way"


async def test_d_and_n_on_a_run_saving_and_stopping_ask_nothing_and_leave_it_stopping(folder):
    app, handles = attached(folder)
    async with driving(app) as pilot:
        run = await shown(app, handles, pilot)
        with run.frozen():
            await pilot.press("n")
            await wait_for(pilot, lambda: showing(app, LeaveModal), "the question")
            await pilot.press("s")
            await wait_for(pilot, lambda: run.stop_requested and showing(app, DashboardScreen), "the stop to go out")
            await wait_for(pilot, lambda: footer_actions(app).get("detach") is False,
                           "a run that is stopping offers no detach")
            await pilot.press("d", "n")
            await wait_for(pilot, lambda: notified(app, "saving last.pt and stopping; n again"), "n: what it does")
            assert showing(app, DashboardScreen), "d or n asked a question"
            assert not run.released, "d or n let go of a run that is stopping"
        await wait_for(pilot, lambda: showing(app, SetupScreen), "the setup screen once it has stopped")
    assert run.result is not None and run.result.state == "stopped"
    assert run.engine.commands == [Stop(save=True, reason="new run")]
    first = app.runs.closing_lines()[0]
    assert first.startswith(f"{run.engine.run_id}: stopped ") and "epoch" in first


def test_a_run_let_go_of_while_it_stops_is_said_to_stop_not_to_go_on(tmp_path):
    """What the shell is told of a background run the app left while it was saving and stopping (the app lets
    go of it on the way out: its socket closes before the RunFinished arrives)."""
    stopping = SocketHandle(tmp_path / "run-1", notify=lambda: None)
    stopping.stop("new run")
    stopping.release()
    going_on = SocketHandle(tmp_path / "run-2", notify=lambda: None)
    going_on.release()
    runs = Lifecycle()
    for handle in (stopping, going_on):
        runs.opened(handle)
    assert not stopping.goes_on and going_on.goes_on
    lines = runs.closing_lines()
    assert lines[0] == ("run-1: told to save last.pt and stop, which it does by itself (`tui-trainer runs` shows "
                        "when it has stopped)")
    assert [line for line in lines if "goes on in the background" in line] == [
        f"run-2: goes on in the background; attach with `tui-trainer attach run-2 --checkpoint-dir {tmp_path}`"]


@contextlib.contextmanager
def frozen(pid: int) -> Iterator[None]:
    """The engine stopped by SIGSTOP: a command sent meanwhile waits in its socket."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@pytest.mark.slow
async def test_a_real_run_told_to_stop_as_the_app_leaves_saves_and_stops_by_itself(tmp_path):
    with cleaned(tmp_path / "checkpoints") as folder:
        info = launch(folder)
        app = attach_app(info.run_dir)
        async with driving(app) as pilot:
            await wait_for(pilot, lambda: isinstance(app.handle, SocketHandle) and app.handle.view.run_id
                           and showing(app, DashboardScreen), "the run's history")
            session = app.handle
            with frozen(info.pid):
                press(app, "ctrl+q")
                await wait_for(pilot, lambda: showing(app, LeaveModal), "the question")
                press(app, "s")
                await wait_for(pilot, lambda: session.stop_requested, "the stop to go out")
                press(app, "ctrl+q")  # again: leave now, without waiting for last.pt
                await wait_for(pilot, lambda: not app.is_running, "the app to exit")
        lines = app.runs.closing_lines()  # after the app has let go of its runs, as run_app prints them
        assert not any("goes on in the background" in line for line in lines), lines
        assert any(line.startswith(f"{info.run_id}: told to save last.pt and stop") for line in lines), lines
        # A loaded machine (CI) may take a while to resume the engine and write last.pt.
        wait_until(lambda: state(info.run_dir) == "stopped", "the run to save and stop by itself", timeout=90)
