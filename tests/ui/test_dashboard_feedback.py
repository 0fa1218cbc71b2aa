"""What the dashboard says agrees with what the run is doing now: the footer's space says Resume while
paused, "saved X" fades from the status line after a few seconds, the tweak panel names the step the
status line names, and the log gives a changed lr as it was (a schedule's base lr named as such). Scripted runs
(tests/ui/fake_handle.py); that the engine reports a schedule's base lr as the old value is
tests/engine/test_trainer.py::test_live_lr_change_keeps_the_schedule_shape."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Label

from tests.ui.conftest import driving, scripted_app, showing, start_scripted, wait_for
from tests.ui.fake_handle import progress as scripted_progress
from tests.ui.fake_handle import steps
from tests.ui.test_view import progress, started
from tui_trainer.engine.events import HyperparametersChanged
from tui_trainer.ui.run_view import RunView
from tui_trainer.ui.screens.checkpoints import SavePanel
from tui_trainer.ui.screens.dashboard import DashboardScreen
from tui_trainer.ui.screens.tweaks import TweakPanel
from tui_trainer.ui.widgets import status


def status_text(app) -> str:
    return str(app.dashboard.status.render())


def log_text(app) -> str:
    return "\n".join(app.dashboard.log_view.texts)


def space_says(app) -> str:
    return app.dashboard.active_bindings["space"].binding.description


async def test_the_footer_says_resume_while_paused_and_pause_while_training(folder):
    app, handles = scripted_app(folder)
    async with driving(app) as pilot:
        await start_scripted(app, handles, pilot)
        assert space_says(app) == "Pause"
        for state, says in (("paused", "Resume"), ("running", "Pause"), ("paused", "Resume")):
            await pilot.press("space")
            await wait_for(pilot, lambda state=state: app.handle.view.state == state, f"the run {state}")
            await wait_for(pilot, lambda says=says: space_says(app) == says, f"the footer to say {says}", timeout=3)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "HelpModal", "the keys")
        assert [row[0] for row in app.screen.rows].count("space") == 1, "one row for one key"


@pytest.mark.parametrize("paused", [False, True])
async def test_saved_fades_from_the_status_line(folder, monkeypatch, paused):
    monkeypatch.setattr(status, "SAVED_SHOWN_S", 0.5)
    app, handles = scripted_app(folder)
    async with driving(app) as pilot:
        await start_scripted(app, handles, pilot)
        if paused:  # nothing else redraws the status line while paused
            await pilot.press("space")
            await wait_for(pilot, lambda: app.handle.view.state == "paused", "the paused state")
        await pilot.press("s")
        await wait_for(pilot, lambda: showing(app, SavePanel), "the save panel")
        app.screen.query_one("#save-name", Input).value = "mine"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen) and "saved mine.pt" in status_text(app),
                       "saved mine.pt in the status line")
        await wait_for(pilot, lambda: "saved" not in status_text(app), "saved to fade", timeout=3)
        assert app.handle.view.last_checkpoint.endswith("mine.pt")


async def test_the_tweak_panel_names_the_step_the_run_is_at(folder):
    app, handles = scripted_app(folder)
    async with driving(app) as pilot:
        run = await start_scripted(app, handles, pilot)
        run.play(*steps(1, 3))
        await wait_for(pilot, lambda: run.view.step == 3, "3 steps")
        await pilot.press("e")
        await wait_for(pilot, lambda: showing(app, TweakPanel), "the tweak panel")
        title = app.screen.query_one("#tweak-title", Label)
        assert "now at step 3" in str(title.render())
        run.play(*steps(4, 47))
        await wait_for(pilot, lambda: run.view.step == 47, "the run to go on")
        await wait_for(pilot, lambda: "now at step 47" in str(title.render()),
                       "the title to name the step the run is at", timeout=3)


def test_the_log_gives_the_old_lr_as_it_was_and_names_a_schedules_base_lr():
    view = RunView()
    view.apply(started())
    view.apply(progress(3))  # lr 0.1 now, as the run was configured
    line = view.apply(HyperparametersChanged(step=3, epoch=1, changes={"lr": 0.00293456}, previous={"lr": 0.1}))
    assert "lr 0.1 -> 0.00293456" in line[0].text and "base" not in line[0].text
    line = view.apply(HyperparametersChanged(step=4, epoch=1, changes={"lr": 0.001}, previous={"lr": 0.00293456}))
    assert "lr 0.00293456 -> 0.001" in line[0].text

    scheduled = RunView()
    scheduled.apply(started(lr=0.002935))  # a cosine schedule has moved this step's lr below the base 0.003
    line = scheduled.apply(HyperparametersChanged(step=3, epoch=1, changes={"lr": 0.001}, previous={"lr": 0.003}))
    assert "base lr 0.003 -> 0.001 (the schedule had this step's lr at 0.002935)" in line[0].text


async def test_a_live_lr_change_on_a_scheduled_run_names_the_base_lr(folder):
    app, handles = scripted_app(folder)
    async with driving(app) as pilot:
        run = await start_scripted(app, handles, pilot)
        run.play(scripted_progress(20, lr=0.0975528))  # a cosine schedule has this step below the base 0.1
        await wait_for(pilot, lambda: run.view.step == 20, "step 20")
        await pilot.press("e")
        await wait_for(pilot, lambda: showing(app, TweakPanel), "the tweak panel")
        app.screen.query_one("#tweak-lr", Input).value = "0.05"
        await pilot.press("enter")
        await wait_for(pilot, lambda: "-> 0.05" in log_text(app), "the change in the log")
        assert "base lr 0.1 -> 0.05 (the schedule had this step's lr at 0.0975528)" in log_text(app)
