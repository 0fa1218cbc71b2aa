"""The app's run lifecycle driven through scripted runs (tests/ui/fake_handle.py): no training, no sleeps."""

from __future__ import annotations

from tests.ui.conftest import driving, footer_actions, showing, wait_for
from tests.ui.fake_handle import ScriptedHandles, steps
from tui_trainer.engine.controls import Pause, Resume, SetHyperparameters, Stop
from tui_trainer.launch import LaunchOptions
from tui_trainer.ui.app import TrainerApp
from tui_trainer.ui.lifecycle import Phase
from tui_trainer.ui.screens.confirm import ConfirmModal
from tui_trainer.ui.screens.dashboard import DashboardScreen
from tui_trainer.ui.screens.leave import LeaveModal
from tui_trainer.ui.screens.setup import SetupScreen


def scripted_app(folder, *, in_thread: bool = True, **options) -> tuple[TrainerApp, ScriptedHandles]:
    handles = ScriptedHandles(str(folder))
    app = TrainerApp(LaunchOptions(preset="iris-linear", in_thread=in_thread,
                                   overrides={"checkpoint.dir": str(folder)}, **options),
                     handles=handles, drain_interval_s=0.01, chart_interval_s=0.05, device_interval_s=0.2)
    return app, handles


async def open_run(app, handles, pilot) -> None:
    await wait_for(pilot, lambda: app.setup_screen.base is not None, "the preset")
    await pilot.press("ctrl+r")
    await wait_for(pilot, lambda: handles.made and app.handle is handles.last and app.handle.view.run_id
                   and showing(app, DashboardScreen), "the scripted run on the dashboard")


async def test_space_pauses_and_resumes_and_the_footer_follows(folder):
    app, handles = scripted_app(folder)
    async with driving(app, size=(120, 40)) as pilot:
        await open_run(app, handles, pilot)
        run = handles.last
        run.play(*steps(1, 12))
        await wait_for(pilot, lambda: run.view.step == 12, "12 steps on screen")
        assert footer_actions(app).get("pause") is True and "resume" not in footer_actions(app)
        await pilot.press("space")
        await wait_for(pilot, lambda: run.view.state == "paused", "paused")
        assert footer_actions(app).get("resume") is True and "pause" not in footer_actions(app)
        await pilot.press("space")
        await wait_for(pilot, lambda: run.view.state == "running", "running again")
        assert [type(command) for command in run.engine.commands] == [Pause, Resume]
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: showing(app, ConfirmModal), "the quit question")
        await pilot.press("y")
        await wait_for(pilot, lambda: not run.active, "the run to save and stop")
    assert isinstance(run.engine.commands[-1], Stop) and run.result.state == "stopped"


async def test_a_finished_run_dims_its_run_keys_and_n_goes_back_to_setup_without_asking(folder):
    app, handles = scripted_app(folder)
    async with driving(app, size=(80, 24)) as pilot:
        await open_run(app, handles, pilot)
        run = handles.last
        run.play(*steps(1, 50))
        run.finish()
        await wait_for(pilot, lambda: app.runs.phase is Phase.ENDED, "the end of the run")
        await pilot.pause(0.05)
        shown = footer_actions(app)
        assert shown["pause"] is False and shown["save"] is False and shown["tweak"] is False
        assert "detach" not in shown, "a run in the app's thread never offers detach"
        await pilot.press("n")
        await wait_for(pilot, lambda: showing(app, SetupScreen), "the setup screen")
        assert app.handle is None and app.runs.phase is Phase.SETUP


async def test_a_live_change_goes_to_the_run_and_shows_on_screen(folder):
    app, handles = scripted_app(folder)
    async with driving(app, size=(120, 40)) as pilot:
        await open_run(app, handles, pilot)
        run = handles.last
        run.play(*steps(1, 5))
        await wait_for(pilot, lambda: run.view.step == 5, "steps")
        app.dashboard._tweaked({"lr": 0.02})
        await wait_for(pilot, lambda: run.view.tweaks, "the change on the view")
        assert run.engine.commands == [SetHyperparameters(lr=0.02)]
        assert any("lr 0.1 -> 0.02" in text for text in app.dashboard.log_view.texts)


async def test_quitting_a_background_run_asks_leave_or_stop_and_leave_lets_it_go_on(folder):
    app, handles = scripted_app(folder, in_thread=False, detach=True)
    async with driving(app, size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.setup_screen.base is not None, "the preset")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: handles.made and app.handle is handles.last and app.handle.view.run_id,
                       "the background run, attached")
        run = handles.last
        assert handles.started[0].hosting.ended_by.name == "NOBODY" and not run.ends_with_app
        assert footer_actions(app).get("detach") is True
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: showing(app, LeaveModal), "leave or stop")
        await pilot.press("l")
        await wait_for(pilot, lambda: not run.active, "the app to let go")
    assert run.released and not run.stop_requested
    assert app.runs.closing_lines() == [f"{run.engine.run_id}: goes on in the background; attach with "
                                        f"`tui-trainer attach {run.engine.run_id} --checkpoint-dir {folder}`"]


async def test_a_run_started_while_the_user_quit_is_stopped_once_it_is_up(folder):
    import threading

    app, handles = scripted_app(folder, in_thread=False)
    handles.gate = threading.Event()
    async with driving(app, size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.setup_screen.base is not None, "the preset")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: app.runs.phase is Phase.STARTING, "the engine starting")
        await wait_for(pilot, lambda: footer_actions(app).get("start") is False, "Start dimmed while it starts")
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: showing(app, ConfirmModal), "the question while starting")
        await pilot.press("y")
        assert app.runs.quit_when_started
        handles.gate.set()
        await wait_for(pilot, lambda: handles.stopped, "the stop once it is up")
    assert not handles.made, "a run the user quit before it was up is never shown"
    assert handles.stopped[0].run_id == "iris-linear-20261201-120000"
    assert app.runs.closing_lines()[0].startswith("iris-linear-20261201-120000: told to save last.pt and stop")
