"""Flows between runs, as a user tries them, on scripted runs (tests/ui/fake_handle.py): loading a checkpoint
while a run trains, attaching to another run from the runs panel, d and n on a background run, a run lost
while shown, and leaving on SIGTERM or SIGHUP."""

from __future__ import annotations

import shutil
import signal

import pytest
from textual.widgets import DataTable

from tests.ui.conftest import (
    driving,
    footer_actions,
    notified,
    scripted_app,
    showing,
    shown,
    start_scripted,
    wait_for,
    write_run_json,
)
from tests.ui.fake_handle import steps
from tui_trainer.engine.controls import Stop
from tui_trainer.ui.screens.checkpoints import LoadPanel
from tui_trainer.ui.screens.confirm import ConfirmModal
from tui_trainer.ui.screens.dashboard import DashboardScreen
from tui_trainer.ui.screens.leave import LeaveModal
from tui_trainer.ui.screens.runs import RunsPanel
from tui_trainer.ui.screens.setup import SetupScreen
from tui_trainer.ui.socket_handle import attach_command

RUN_ID = "iris-linear-20261201-120000"
"""The run id of the first scripted run (a background run started from the form has the same)."""


def log_text(app) -> str:
    return "\n".join(app.dashboard.log_view.texts)


async def choose_row(app, pilot, table_id: str, key: str) -> None:
    table = app.screen.query_one(table_id, DataTable)
    table.move_cursor(row=table.get_row_index(key))
    await pilot.press("enter")


# ---------------------------------------------------------------- loading while a run trains


async def test_loading_while_a_run_trains_stops_it_first_then_opens_the_checkpoint_paused(folder,
                                                                                         trained_checkpoint):
    chosen = folder / "earlier.pt"
    folder.mkdir(parents=True)
    shutil.copy(trained_checkpoint, chosen)
    app, handles = scripted_app(folder)
    async with driving(app) as pilot:
        first = await start_scripted(app, handles, pilot)
        first.play(*steps(1, 12))
        await wait_for(pilot, lambda: first.view.step == 12, "steps")
        with first.frozen():  # the run takes a while to save last.pt
            await pilot.press("l")
            await wait_for(pilot, lambda: showing(app, LoadPanel) and str(chosen) in app.screen.infos, "the list")
            await choose_row(app, pilot, "#load-table", str(chosen))
            await wait_for(pilot, lambda: first.stop_requested, "the run told to stop")
            assert showing(app, DashboardScreen) and app.handle is first and first.active
            assert "saving last.pt, then loading earlier.pt" in app.dashboard.note
            assert len(handles.made) == 1, "the checkpoint opened before the run had stopped"
        loaded = await shown(app, handles, pilot, nth=2)
        assert first.result.state == "stopped" and first.result.checkpoint == f"{first.run_dir}/last.pt"
        assert first.engine.commands == [Stop(save=True, reason=f"loading {chosen}")]
        assert loaded.resume_from == str(chosen) and loaded.name == "iris-linear"
        await wait_for(pilot, lambda: loaded.view.state == "paused", "the checkpoint, paused")
        assert not loaded.engine.commands, "nothing trains until space"
        assert notified(app, "Loaded; the run waits paused: space starts it.")
        assert f"Loading {chosen}" in log_text(app), "the log goes on from the first run's"
        await pilot.press("space")
        await wait_for(pilot, lambda: loaded.view.state == "running", "the loaded run, training")


# ---------------------------------------------------------------- the runs panel: attach to another run


async def test_attaching_to_another_run_lets_go_of_the_background_run_shown(folder):
    shown_dir = write_run_json(folder, RUN_ID)
    other = write_run_json(folder, "digits-mlp-20261201-130000", preset="digits-mlp")
    app, handles = scripted_app(folder, preset=None, attach=str(shown_dir))
    async with driving(app) as pilot:
        first = await shown(app, handles, pilot)
        await pilot.press("r")
        await wait_for(pilot, lambda: showing(app, RunsPanel) and len(app.screen.infos) == 2, "both runs")
        await choose_row(app, pilot, "#runs-table", str(shown_dir))
        status = app.screen.query_one("#runs-status")
        await wait_for(pilot, lambda: "attached to run" in str(status.render()), "already attached")
        await choose_row(app, pilot, "#runs-table", str(other))
        second = await shown(app, handles, pilot, nth=2)
        assert not isinstance(app.screen, ConfirmModal), "a run that goes on alone needs no question"
        assert second.run_dir == str(other)
        assert first.released and not first.stop_requested and not first.engine.commands
        assert not first.active and app.runs.handles == [first, second]
    lines = app.runs.closing_lines()
    assert f"{RUN_ID}: goes on in the background; attach with `{attach_command(shown_dir)}`" in lines


async def test_attaching_to_another_run_asks_before_stopping_a_run_of_the_app(folder):
    other = write_run_json(folder, "digits-mlp-20261201-130000", preset="digits-mlp")
    app, handles = scripted_app(folder)
    async with driving(app) as pilot:
        first = await start_scripted(app, handles, pilot)
        await pilot.press("r")
        await wait_for(pilot, lambda: showing(app, RunsPanel) and app.screen.infos, "the runs")
        await choose_row(app, pilot, "#runs-table", str(other))
        await wait_for(pilot, lambda: showing(app, ConfirmModal), "the question")
        await pilot.press("y")
        second = await shown(app, handles, pilot, nth=2)
        assert second.run_dir == str(other) and second.can_go_on_alone
        assert first.engine.commands == [Stop(save=True, reason=f"saving last.pt, then attaching to {other.name}")]
        assert first.result.state == "stopped" and not first.released


# ---------------------------------------------------------------- d and n on a background run


async def test_d_lets_go_of_a_background_run_and_the_toast_names_the_attach_command(folder):
    app, handles = scripted_app(folder, in_thread=False, detach=True)
    async with driving(app) as pilot:
        run = await start_scripted(app, handles, pilot)
        run.play(*steps(1, 3))
        await wait_for(pilot, lambda: run.view.step == 3, "steps")
        await pilot.press("d")
        await wait_for(pilot, lambda: showing(app, SetupScreen), "the setup screen")
        assert run.released and not run.stop_requested and not run.engine.commands
        assert app.handle is None and app.is_running
        command = attach_command(run.run_dir)
        assert command == f"tui-trainer attach {RUN_ID} --checkpoint-dir {folder}"
        assert notified(app, f"Detached: run {run.name} goes on in the background. Attach again with `{command}`, "
                             "or r.")


async def test_d_in_attach_mode_exits_and_leaves_the_run_training(folder):
    run_dir = write_run_json(folder, RUN_ID)
    app, handles = scripted_app(folder, preset=None, attach=str(run_dir))
    async with driving(app) as pilot:
        run = await shown(app, handles, pilot)
        await pilot.press("d")
        await wait_for(pilot, lambda: not app.is_running, "the app to exit")
    assert run.released and not run.stop_requested and not run.engine.commands
    assert app.exit_code == 0 and not any(isinstance(screen, SetupScreen) for screen in app.screen_stack)
    assert app.runs.closing_lines() == [f"{RUN_ID}: goes on in the background; attach with "
                                        f"`{attach_command(run_dir)}`"]


@pytest.mark.parametrize("answer", ["l", "s", "n"])
async def test_n_on_a_background_run_asks_whether_to_leave_it_running_or_stop_it(folder, answer):
    app, handles = scripted_app(folder, in_thread=False, detach=True)
    async with driving(app) as pilot:
        run = await start_scripted(app, handles, pilot)
        await pilot.press("n")
        await wait_for(pilot, lambda: showing(app, LeaveModal), "the question")
        assert f"Run {run.name} trains in the background" in str(app.screen.query_one(".panel-text").render())
        await pilot.press(answer)
        if answer == "n":  # cancel: back on its dashboard, nothing asked of it
            await wait_for(pilot, lambda: showing(app, DashboardScreen), "the dashboard")
            assert run.active and not run.released and not run.engine.commands
            return
        await wait_for(pilot, lambda: showing(app, SetupScreen), "the setup screen")
        assert app.handle is None and not run.active
        if answer == "l":
            assert run.released and not run.engine.commands
        else:
            assert not run.released and run.engine.commands == [Stop(save=True, reason="new run")]
            assert run.result.checkpoint == f"{run.run_dir}/last.pt"


# ---------------------------------------------------------------- a run lost while shown


async def test_the_apps_own_engine_lost_while_shown_says_so_and_quitting_asks_nothing(folder):
    app, handles = scripted_app(folder, in_thread=False)
    async with driving(app) as pilot:
        run = await start_scripted(app, handles, pilot)
        assert run.ends_with_app and run.can_go_on_alone
        await wait_for(pilot, lambda: run.shown_calls == 1, "the engine told it may start")
        run.play(*steps(1, 6))
        await wait_for(pilot, lambda: run.view.step == 6, "steps")
        run.lose("killed by SIGKILL")
        await wait_for(pilot, lambda: run.view.state == "lost", "the lost state")
        assert "Lost" in str(app.dashboard.status.render())
        assert "Run lost at step 6: the engine process killed by SIGKILL; no checkpoint" in log_text(app)
        await wait_for(pilot, lambda: notified(app, f"Run {run.name} is lost: killed by SIGKILL"), "the toast")
        await wait_for(pilot, lambda: footer_actions(app).get("pause") is False, "pause dimmed")
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: not app.is_running, "the app to exit without asking")
    assert not run.engine.commands


# ---------------------------------------------------------------- SIGTERM and SIGHUP


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=lambda signum: signal.Signals(signum).name)
@pytest.mark.parametrize("hosted", ["in the app's thread", "in the app's engine process"])
async def test_a_signal_saves_and_stops_a_run_that_ends_with_the_app_then_exits(folder, signum, hosted):
    app, handles = scripted_app(folder, in_thread=hosted == "in the app's thread")
    async with driving(app) as pilot:
        run = await start_scripted(app, handles, pilot)
        assert run.ends_with_app
        with run.frozen():  # saving last.pt takes a moment: the app waits for it
            app.on_signal(signum)
            await wait_for(pilot, lambda: run.stop_requested, "the stop")
            assert app.is_running and "saving last.pt before leaving" in app.dashboard.note
        await wait_for(pilot, lambda: not app.is_running, "the app to exit once saved")
    assert app.exit_code == 128 + signum
    name = signal.Signals(signum).name
    assert run.engine.commands == [Stop(save=True, reason=name)] and not run.released
    assert run.result.state == "stopped" and run.result.checkpoint == f"{run.run_dir}/last.pt"
    assert app.runs.closing_lines()[0].endswith(f"last checkpoint {run.run_dir}/last.pt")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=lambda signum: signal.Signals(signum).name)
async def test_a_signal_lets_go_of_a_background_run_and_exits_at_once(folder, signum):
    app, handles = scripted_app(folder, in_thread=False, detach=True)
    async with driving(app) as pilot:
        run = await start_scripted(app, handles, pilot)
        with run.frozen():  # nothing is asked of it: the app does not wait for it
            app.on_signal(signum)
            await wait_for(pilot, lambda: not app.is_running, "the app to exit")
    assert app.exit_code == 128 + signum
    assert run.released and not run.stop_requested and not run.engine.commands
    assert app.runs.closing_lines() == [f"{RUN_ID}: goes on in the background; attach with "
                                        f"`{attach_command(run.run_dir)}`"]
