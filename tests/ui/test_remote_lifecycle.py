"""Background runs in the app, driven through scripted runs (tests/ui/fake_handle.py): the setup screen's Detach
switch and Processes field, loading a checkpoint while attached (a new background run, waiting paused), an
engine killed under the dashboard (shown as lost, with its exit status and last checkpoint), the runs panel,
and a new run that leaves the shown one training.

What only real processes show stays in test_remote.py (a detached run steered through its socket, its history
with no gap, a resumed last.pt paused with its history, a dropped terminal) and test_engine_process.py; that a
killed engine's run.json says lost with its exit status is tests/detached/test_detached.py's.
"""

from __future__ import annotations

import shutil
import time

from textual.widgets import DataTable, Input, Static, Switch

from tests.ui.conftest import (
    driving,
    footer_actions,
    notified,
    scripted_app,
    showing,
    shown,
    wait_for,
    write_run_json,
)
from tests.ui.fake_handle import steps
from tui_trainer.engine.controls import Save, Stop
from tui_trainer.ui.screens.checkpoints import LoadPanel, SavePanel
from tui_trainer.ui.screens.dashboard import DashboardScreen
from tui_trainer.ui.screens.leave import LeaveModal
from tui_trainer.ui.screens.runs import RunsPanel
from tui_trainer.ui.screens.setup import DETACH_HINTS, TORCHRUN_HINT, SetupScreen


def field_error(app, name: str) -> str:
    error = app.setup_screen.query_one(f"#error-{name}", Static)
    return str(error.render()) if error.display else ""


def log_text(app) -> str:
    return "\n".join(app.dashboard.log_view.texts)


async def test_the_detach_switch_starts_a_detached_run_and_a_load_goes_on_detached(folder, trained_checkpoint):
    app, handles = scripted_app(folder, in_thread=False)
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
        assert app.handle is None and app.focused is processes and not handles.started
        processes.value = "2"
        await wait_for(pilot, lambda: switch.value and switch.disabled, "more than one process to mean detached")
        hint = setup.query_one("#detach-hint", Static)
        assert str(hint.render()) == TORCHRUN_HINT.format(n=2)
        processes.value = "1"
        await wait_for(pilot, lambda: not switch.disabled and not field_error(app, "processes"), "one process")
        switch.value = False
        switch.focus()
        await pilot.press("space")
        assert switch.value
        await wait_for(pilot, lambda: str(hint.render()) == DETACH_HINTS[True], "the hint")

        await pilot.press("ctrl+r")
        first = await shown(app, handles, pilot)
        launch = handles.started[0]
        assert launch.hosting.detached_run and launch.hosting.processes == 1 and not launch.start_paused
        assert first.can_go_on_alone and not first.ends_with_app
        await wait_for(pilot, lambda: notified(app, f"Run {first.engine.run_id} trains in the background (pid 4242)"),
                       "the toast naming the run")
        assert footer_actions(app).get("detach") is True

        await pilot.press("s")
        await wait_for(pilot, lambda: showing(app, SavePanel), "the save panel")
        app.screen.query_one("#save-name", Input).value = "here"
        await pilot.press("enter")
        saved = f"{first.run_dir}/here.pt"
        await wait_for(pilot, lambda: showing(app, DashboardScreen) and first.view.last_checkpoint == saved,
                       "here.pt saved")
        shutil.copy(trained_checkpoint, saved)  # the file the engine would have written there

        await pilot.press("l")
        await wait_for(pilot, lambda: showing(app, LoadPanel) and saved in app.screen.infos,
                       "the checkpoint in the load panel")
        assert app.screen.folder == str(folder), "the load panel opens on the run's checkpoint folder"
        table = app.screen.query_one("#load-table", DataTable)
        table.move_cursor(row=table.get_row_index(saved))
        await pilot.press("enter")
        loaded = await shown(app, handles, pilot, nth=2)
        assert loaded is not first and not first.active and first.result.state == "stopped"
        assert first.engine.commands[-1] == Stop(save=True, reason=f"loading {saved}")
        reload = handles.started[1]
        assert reload.request.resume == saved and reload.start_paused and reload.hosting.detached_run
        await wait_for(pilot, lambda: loaded.view.state == "paused", "the loaded run to wait paused")
        assert loaded.can_go_on_alone and not loaded.ends_with_app
        assert notified(app, "it waits paused (space starts it)")

        await pilot.press("q")
        await wait_for(pilot, lambda: showing(app, LeaveModal), "the question")
        await pilot.press("s")
        await wait_for(pilot, lambda: not app.is_running, "the app to exit once the run is saved")
    assert loaded.result is not None and loaded.result.state == "stopped"


async def test_a_killed_engine_shows_as_lost_with_its_exit_status(folder):
    run_dir = write_run_json(folder, "iris-linear-20261201-120000")
    app, handles = scripted_app(folder, preset=None, attach=str(run_dir))
    async with driving(app) as pilot:
        run = await shown(app, handles, pilot)
        run.play(*steps(1, 5))
        await wait_for(pilot, lambda: run.view.step == 5, "live steps")
        await pilot.press("s")
        await wait_for(pilot, lambda: showing(app, SavePanel), "the save panel")
        await pilot.press("enter")
        await wait_for(pilot, lambda: showing(app, DashboardScreen) and run.view.last_checkpoint, "a checkpoint")
        checkpoint = run.view.last_checkpoint

        write_run_json(folder, run_dir.name, state="lost", exit_status="killed by SIGKILL",
                       last_checkpoint=checkpoint)  # as the run's supervisor marks it
        run.lose("killed by SIGKILL", checkpoint)
        await wait_for(pilot, lambda: run.view.state == "lost", "the lost state")
        status = str(app.dashboard.status.render())
        assert "Lost" in status and app.is_running
        assert "killed by SIGKILL" in log_text(app) and checkpoint in log_text(app)
        assert notified(app, f"Run {run.name} is lost: killed by SIGKILL")
        await wait_for(pilot, lambda: footer_actions(app).get("pause") is False, "pause dimmed on a lost run")
        assert footer_actions(app)["save"] is False and footer_actions(app)["app.runs"]

        await pilot.press("r")
        await wait_for(pilot, lambda: showing(app, RunsPanel) and app.screen.infos, "the runs")
        table = app.screen.query_one("#runs-table", DataTable)
        assert "lost (killed by SIGKILL)" in map(str, table.get_row(str(run_dir)))
        await pilot.press("escape")
        await wait_for(pilot, lambda: showing(app, DashboardScreen), "the dashboard")
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running, "the app to exit without asking")
    assert [type(command) for command in run.engine.commands] == [Save], "nothing asked of a lost run"


async def test_the_runs_panel_lists_runs_and_enter_attaches(folder):
    live = write_run_json(folder, "iris-linear-20261201-120000", started_at=time.time() - 60)
    gone = write_run_json(folder, "iris-linear-gone", state="lost", pid=1, epoch=3, epochs=10, step=24,
                          exit_status="killed by SIGKILL", last_checkpoint=str(folder / "iris-linear-gone" /
                                                                               "epoch-0003.pt"))
    app, handles = scripted_app(folder)
    async with driving(app) as pilot:
        await wait_for(pilot, lambda: app.setup_screen.base is not None, "the setup screen")
        await pilot.press("r")
        await wait_for(pilot, lambda: showing(app, RunsPanel) and len(app.screen.infos) == 2, "two runs")
        panel = app.screen
        table = panel.query_one("#runs-table", DataTable)
        assert [str(key.value) for key in table.rows] == [str(gone), str(live)], "newest first"
        assert "lost (killed by SIGKILL)" in map(str, table.get_row(str(gone)))
        assert "running" in map(str, table.get_row(str(live)))
        await pilot.press("enter")
        status = panel.query_one("#runs-status", Static)
        await wait_for(pilot, lambda: "nothing to attach to" in str(status.render()), "why it cannot be attached")
        assert "epoch-0003.pt" in str(status.render()) and isinstance(app.screen, RunsPanel)
        await pilot.press("enter")
        await wait_for(pilot, lambda: showing(app, LoadPanel), "the load panel on its folder")
        assert app.screen.folder == str(gone)
        await pilot.press("escape")
        await wait_for(pilot, lambda: showing(app, SetupScreen), "the setup screen")
        assert not handles.made

        await pilot.press("r")
        await wait_for(pilot, lambda: showing(app, RunsPanel) and app.screen.infos, "the runs")
        table = app.screen.query_one("#runs-table", DataTable)
        table.move_cursor(row=table.get_row_index(str(live)))
        await pilot.press("enter")
        run = await shown(app, handles, pilot)
        assert run.run_dir == str(live) and run.can_go_on_alone and not run.ends_with_app
        run.play(*steps(1, 3))
        await wait_for(pilot, lambda: run.view.step == 3, "live steps")
        await pilot.press("d")
        await wait_for(pilot, lambda: showing(app, SetupScreen), "back to setup after d")
        assert run.released and app.handle is None
    assert not run.engine.commands, "attaching and d ask nothing of the run"


async def test_new_run_can_leave_the_run_training_and_go_to_setup(folder):
    run_dir = write_run_json(folder, "iris-linear-20261201-120000")
    app, handles = scripted_app(folder, preset=None, attach=str(run_dir))
    async with driving(app) as pilot:
        run = await shown(app, handles, pilot)
        await pilot.press("n")
        await wait_for(pilot, lambda: showing(app, LeaveModal), "the question")
        await pilot.press("l")
        await wait_for(pilot, lambda: showing(app, SetupScreen), "the setup screen")
        assert run.released and not run.active and app.handle is None
        await wait_for(pilot, lambda: app.setup_screen.base is not None, "the form")
    assert not run.engine.commands, "leaving it running asks nothing of it"
