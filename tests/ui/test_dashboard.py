"""The dashboard and its keys: pause and resume, save and load, live tweaks, new run, quit, a signal, help, the
command palette, and a fault that pauses the run with advice.

Most tests drive scripted runs (tests/ui/fake_handle.py). Two keep a real tiny run, for what only the engine
can show: a live lr change reaches the optimizer and metrics.jsonl, and a save writes a checkpoint that the
load panel lists and really resumes.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

from textual.widgets import DataTable, Input, Static

from tests.ui.conftest import (
    driving,
    footer_actions,
    make_app,
    notified,
    palette_offers,
    press,
    scripted_app,
    showing,
    start_scripted,
    start_training,
    wait_for,
)
from tests.ui.fake_handle import fault_pause, steps
from tui_trainer.engine.controls import Pause, Resume, Save, SetHyperparameters, Stop
from tui_trainer.ui.screens.checkpoints import LoadPanel, SavePanel
from tui_trainer.ui.screens.confirm import ConfirmModal
from tui_trainer.ui.screens.dashboard import DashboardScreen
from tui_trainer.ui.screens.help import HelpModal
from tui_trainer.ui.screens.setup import SetupScreen
from tui_trainer.ui.screens.tweaks import TweakPanel


def status_text(app) -> str:
    return str(app.dashboard.status.render())


def log_text(app) -> str:
    return "\n".join(app.dashboard.log_view.texts)


async def test_space_pauses_and_resumes_and_the_status_and_log_say_so(folder):
    app, handles = scripted_app(folder)
    async with driving(app) as pilot:
        run = await start_scripted(app, handles, pilot)
        run.play(*steps(1, 7))
        await wait_for(pilot, lambda: run.view.step == 7, "7 steps on screen")
        assert "Running" in status_text(app)
        await pilot.press("space")
        await wait_for(pilot, lambda: run.view.state == "paused", "the paused state")
        assert "Paused" in status_text(app) and "Paused at step 7 (space resumes)" in log_text(app)
        await pilot.press("space")
        await wait_for(pilot, lambda: run.view.state == "running", "the run again")
        assert "Running" in status_text(app) and "Resumed at step 7" in log_text(app)
        run.play(*steps(8, 9))
        await wait_for(pilot, lambda: run.view.step == 9, "steps on screen after resuming")
    assert run.engine.commands[:2] == [Pause(), Resume()]


async def test_the_tweak_panel_refuses_a_bad_value_and_a_change_shows_in_the_log_chart_and_status(folder):
    app, handles = scripted_app(folder)
    async with driving(app) as pilot:
        run = await start_scripted(app, handles, pilot)
        run.play(*steps(1, 4))
        await wait_for(pilot, lambda: run.view.step == 4, "steps")
        await pilot.press("e")
        await wait_for(pilot, lambda: showing(app, TweakPanel), "the tweak panel")
        panel = app.screen
        assert {widget.id for widget in panel.query(Input)} == {"tweak-lr", "tweak-weight_decay", "tweak-momentum"}
        panel.query_one("#tweak-lr", Input).value = "-1"
        await pilot.press("enter")
        assert isinstance(app.screen, TweakPanel)
        assert "allowed: a number > 0" in str(panel.query_one("#tweak-lr-error", Static).render())
        panel.query_one("#tweak-lr", Input).value = "0.0123"
        await pilot.press("enter")
        await wait_for(pilot, lambda: run.view.tweaks, "the change on screen")
        assert run.engine.commands == [SetHyperparameters(lr=0.0123)], "only the good value went to the run"
        await wait_for(pilot, lambda: any(mark.step == 4 for mark in app.dashboard.loss_chart.marks),
                       "the mark on the loss chart")
        assert "lr 0.1 -> 0.0123" in log_text(app)
        await wait_for(pilot, lambda: "0.0123" in status_text(app), "the lr in the status line")
        assert notified(app, "applied at the next step boundary")


async def test_a_live_lr_change_reaches_the_optimizer_and_metrics_jsonl(folder):
    """End to end: the tweak panel's value is the optimizer's lr at the next step, and the run records it."""
    app = make_app(folder)
    async with driving(app) as pilot:
        await start_training(app, pilot)
        press(app, "e")
        await wait_for(pilot, lambda: showing(app, TweakPanel), "the tweak panel")
        app.screen.query_one("#tweak-lr", Input).value = "0.0123"
        await pilot.pause(0.05)
        press(app, "enter")
        optimizer = app.handle.trainer.optimizer
        await wait_for(pilot, lambda: optimizer.param_groups[0]["lr"] == 0.0123, "the new lr in the optimizer")
        await wait_for(pilot, lambda: "lr 0.1 -> 0.0123" in log_text(app), "the change in the log")
    lines = Path(app.handles[0].view.run_dir, "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert any(r["type"] == "hyperparameters_changed" and r["changes"] == {"lr": 0.0123} for r in records)


async def test_save_writes_a_checkpoint_that_the_load_panel_lists_and_loads(folder):
    """End to end: the file is written, listed, and resumed paused with its history, at the step it was saved."""
    app = make_app(folder)
    async with driving(app) as pilot:
        await start_training(app, pilot, steps=50)
        first = app.handle
        press(app, "s")
        await wait_for(pilot, lambda: showing(app, SavePanel), "the save panel")
        app.screen.query_one("#save-name", Input).value = "mine"
        await pilot.pause(0.05)
        press(app, "enter")
        saved = Path(first.view.run_dir) / "mine.pt"
        await wait_for(pilot, lambda: saved.is_file() and isinstance(app.screen, DashboardScreen), "mine.pt")
        await wait_for(pilot, lambda: f"Saved manual checkpoint {saved}" in log_text(app), "the log's confirmation")

        press(app, "l")
        await wait_for(pilot, lambda: showing(app, LoadPanel) and app.screen.infos, "the listed checkpoints")
        table = app.screen.query_one("#load-table", DataTable)
        assert str(saved) in app.screen.infos
        table.move_cursor(row=table.get_row_index(str(saved)))
        await pilot.pause(0.05)
        press(app, "enter")
        await wait_for(pilot, lambda: app.handle is not first and app.handle.view.run_id, "the loaded run")
        assert not first.active and (Path(first.view.run_dir) / "last.pt").is_file()
        loaded = app.handle
        assert loaded.resume_from == str(saved)
        await wait_for(pilot, lambda: loaded.view.state == "paused", "the loaded run to wait paused")
        assert len(loaded.view.loss) > 0, "the charts hold the checkpoint's history"
        assert loaded.view.step == loaded.trainer.step > 0
        step = loaded.trainer.step
        await pilot.pause(0.2)
        assert loaded.trainer.step == step
        press(app, "space")
        await wait_for(pilot, lambda: loaded.trainer.step > step, "the loaded run to train")


async def test_save_panel_reports_a_folder_it_cannot_write_and_asks_nothing_of_the_run(folder, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    app, handles = scripted_app(folder)
    async with driving(app) as pilot:
        run = await start_scripted(app, handles, pilot)
        await pilot.press("s")
        await wait_for(pilot, lambda: showing(app, SavePanel), "the save panel")
        app.screen.query_one("#save-folder", Input).value = str(blocker / "sub")
        await pilot.press("enter")
        status = app.screen.query_one("#save-status", Static)
        await wait_for(pilot, lambda: "Not saved" in str(status.render()), "the panel's message")
        assert "cannot create" in str(status.render()) and "The run goes on" in str(status.render())
        assert isinstance(app.screen, SavePanel)
        run.play(*steps(1, 3))
        await wait_for(pilot, lambda: run.view.step == 3, "the run to go on")
    assert not any(isinstance(command, Save) for command in run.engine.commands)


async def test_load_panel_explains_a_file_it_cannot_load(folder):
    folder.mkdir(parents=True)
    (folder / "broken.pt").write_bytes(b"PK\x03\x04 not really a checkpoint")
    (folder / "notes.pt").write_text("hello")
    app, handles = scripted_app(folder)
    async with driving(app) as pilot:
        await wait_for(pilot, lambda: app.setup_screen.base is not None, "the preset")
        await pilot.press("l")
        await wait_for(pilot, lambda: showing(app, LoadPanel) and len(app.screen.infos) == 2, "the list")
        panel = app.screen
        await pilot.press("enter")
        status = panel.query_one("#load-status", Static)
        await wait_for(pilot, lambda: "Cannot load" in str(status.render()), "the panel's message")
        assert isinstance(app.screen, LoadPanel) and app.handle is None
        await pilot.press("escape")
        assert isinstance(app.screen, SetupScreen)
    assert not handles.made


async def test_quitting_during_a_run_asks_and_yes_saves_last_pt_and_exits(folder):
    app, handles = scripted_app(folder)
    async with driving(app) as pilot:
        run = await start_scripted(app, handles, pilot)
        await pilot.press("ctrl+c")
        await wait_for(pilot, lambda: showing(app, ConfirmModal), "the confirmation")
        await pilot.press("n")
        await wait_for(pilot, lambda: showing(app, DashboardScreen), "the dashboard again")
        assert run.active and not run.engine.commands, "no leaves the run alone"
        await pilot.press("q")
        await wait_for(pilot, lambda: showing(app, ConfirmModal), "the confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: not app.is_running, "the app to exit")
    assert run.engine.commands == [Stop(save=True, reason="quit")]
    assert run.result.state == "stopped" and run.result.checkpoint == f"{run.run_dir}/last.pt"
    assert app.exit_code == 0


async def test_sigterm_saves_last_pt_and_exits_with_its_code(folder):
    app, handles = scripted_app(folder)
    async with driving(app) as pilot:
        run = await start_scripted(app, handles, pilot)
        app.on_signal(signal.SIGTERM)
        await wait_for(pilot, lambda: not app.is_running, "the app to exit")
    assert app.exit_code == 128 + signal.SIGTERM
    assert run.engine.commands == [Stop(save=True, reason="SIGTERM")] and run.result.state == "stopped"


async def test_new_run_asks_then_saves_stops_and_returns_to_setup(folder):
    app, handles = scripted_app(folder)
    async with driving(app) as pilot:
        run = await start_scripted(app, handles, pilot)
        await pilot.press("n")
        await wait_for(pilot, lambda: showing(app, ConfirmModal), "the confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: showing(app, SetupScreen), "the setup screen")
        assert not run.active and app.handle is None and app.dashboard is None
        assert run.engine.commands == [Stop(save=True, reason="new run")]


async def test_help_and_command_palette_reach_every_action(folder):
    app, handles = scripted_app(folder)
    async with driving(app) as pilot:
        await start_scripted(app, handles, pilot)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: showing(app, HelpModal), "the keys")
        keys = {row[0] for row in app.screen.rows}
        assert {"space", "s", "l", "e", "n", "q", "?"} <= keys
        await pilot.press("escape")
        await wait_for(pilot, lambda: showing(app, DashboardScreen), "the dashboard")
        titles = {command.title for command in app.get_system_commands(app.dashboard)}
        assert {"Pause or resume", "Save checkpoint", "Load checkpoint", "Live tweaks", "New run", "Keys",
                "Quit"} <= titles
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "CommandPalette", "the command palette")
        await pilot.press(*["space" if key == " " else key for key in "live tweaks"])
        await wait_for(pilot, lambda: palette_offers(app, "Live tweaks"), "the palette's match")
        await pilot.press("enter")
        await wait_for(pilot, lambda: showing(app, TweakPanel), "the tweak panel from the palette")


async def test_a_fault_pauses_the_run_with_the_banner_and_advice_and_space_resumes(folder):
    app, handles = scripted_app(folder)
    async with driving(app) as pilot:
        run = await start_scripted(app, handles, pilot)
        run.play(*steps(1, 29), *fault_pause("training loss is nan at step 30", "non_finite",
                                             "lower the learning rate, set grad_clip, or continue from the last "
                                             "good checkpoint"), *steps(30, 31))
        await wait_for(pilot, lambda: app.dashboard.fault.display, "the fault banner")
        banner = str(app.dashboard.fault.render())
        assert "Training paused: training loss is nan at step 30." in banner and "lower the learning rate" in banner
        assert run.view.state == "paused" and run.active and run.view.step == 29
        assert "Paused" in status_text(app) and "Fault: training loss is nan at step 30" in log_text(app)
        await pilot.press("space")
        await wait_for(pilot, lambda: run.view.step == 31, "the run to go on")
        assert not app.dashboard.fault.display and run.view.state == "running"


async def test_a_finished_run_dims_the_keys_that_act_on_a_run_and_the_palette_says_why(folder):
    app, handles = scripted_app(folder)
    async with driving(app) as pilot:
        run = await start_scripted(app, handles, pilot)
        run.play(*steps(1, 50))
        run.finish()
        await wait_for(pilot, lambda: run.view.state == "finished" and not run.active, "the end of the run")
        await wait_for(pilot, lambda: "Finished" in status_text(app), "Finished in the status line")
        await wait_for(pilot, lambda: footer_actions(app).get("pause") is False, "pause dimmed")
        shown = footer_actions(app)
        assert shown["pause"] is False and shown["save"] is False and shown["tweak"] is False, shown
        assert shown["new_run"] and shown["app.load"], "what a finished run still allows stays lit"
        await pilot.press("space")
        assert run.view.state == "finished" and isinstance(app.screen, DashboardScreen)
        commands = {command.title: command for command in app.get_system_commands(app.dashboard)}
        commands["Pause or resume"].callback()
        await wait_for(pilot, lambda: notified(app, "No run is training"), "why not")
    assert not run.engine.commands


async def test_resume_option_opens_the_checkpoint_paused(folder, trained_checkpoint):
    saved = trained_checkpoint
    app, handles = scripted_app(folder, preset=None, resume=str(saved))
    async with driving(app) as pilot:
        await wait_for(pilot, lambda: handles.made and app.handle is handles.last, "the resumed run")
        run = handles.last
        await wait_for(pilot, lambda: run.view.state == "paused" and showing(app, DashboardScreen),
                       "the resumed run, paused")
        assert run.resume_from == str(saved) and run.engine.paused
        assert run.name == "iris-linear", "the run is the checkpoint's, named by its stored config"
        assert not run.engine.commands, "nothing trains until space"


async def test_what_the_app_holds_is_kept_out_of_full_collections_while_a_run_shows(folder):
    """A full pass of the garbage collector over the app's heap (torch, Textual) took 100-150 ms of the UI
    thread, felt by the training beside it; once a run is on screen the app's objects are frozen, and
    leaving the app thaws them."""
    import gc

    app, handles = scripted_app(folder)
    async with driving(app) as pilot:
        await start_scripted(app, handles, pilot)
        await wait_for(pilot, lambda: gc.get_freeze_count() > 0, "the app's objects to be frozen")
    assert gc.get_freeze_count() == 0
