"""The dashboard and its keys, driven against a real tiny run: pause and resume, save and load, live
tweaks, new run, quit, help, the command palette, and a fault that pauses the run with advice."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from textual.widgets import DataTable, Input, Static

from tests.ui.conftest import driving, footer_actions, make_app, press, showing, start_training, wait_for
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


async def test_space_pauses_the_steps_and_resumes_them(folder):
    app = make_app(folder)
    async with driving(app) as pilot:
        await start_training(app, pilot)
        trainer = app.handle.trainer
        press(app, "space")
        await wait_for(pilot, lambda: app.handle.view.state == "paused", "the paused state")
        assert "Paused" in status_text(app)
        paused_at, shown = trainer.step, app.handle.view.step
        for _ in range(6):
            await pilot.pause(0.05)
            assert trainer.step == paused_at and app.handle.view.step == shown
        press(app, "space")
        await wait_for(pilot, lambda: trainer.step > paused_at + 20, "steps after resuming")
        await wait_for(pilot, lambda: app.handle.view.step > paused_at, "steps on screen after resuming")
        assert app.handle.view.state == "running" and "Running" in status_text(app)


async def test_a_live_lr_change_reaches_the_optimizer_and_the_loss_chart(folder):
    app = make_app(folder)
    async with driving(app) as pilot:
        await start_training(app, pilot)
        press(app, "e")
        await wait_for(pilot, lambda: showing(app, TweakPanel), "the tweak panel")
        panel = app.screen
        assert {widget.id for widget in panel.query(Input)} == {"tweak-lr", "tweak-weight_decay", "tweak-momentum"}
        panel.query_one("#tweak-lr", Input).value = "-1"
        await pilot.pause(0.05)
        press(app, "enter")
        await pilot.pause(0.05)
        assert isinstance(app.screen, TweakPanel)
        assert "allowed: a number > 0" in str(panel.query_one("#tweak-lr-error", Static).render())
        panel.query_one("#tweak-lr", Input).value = "0.0123"
        await pilot.pause(0.05)
        press(app, "enter")
        optimizer = app.handle.trainer.optimizer
        await wait_for(pilot, lambda: optimizer.param_groups[0]["lr"] == 0.0123, "the new lr in the optimizer")
        await wait_for(pilot, lambda: app.handle.view.tweaks, "the change on screen")
        step = app.handle.view.tweaks[-1].step
        await wait_for(pilot, lambda: any(mark.step == step for mark in app.dashboard.loss_chart.marks),
                       "the mark on the loss chart")
        assert "lr 0.1 -> 0.0123" in log_text(app)
        await wait_for(pilot, lambda: "0.0123" in status_text(app), "the lr in the status line")
    lines = Path(app.handles[0].view.run_dir, "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert any(r["type"] == "hyperparameters_changed" and r["changes"] == {"lr": 0.0123} for r in records)


async def test_save_writes_a_checkpoint_that_the_load_panel_lists_and_loads(folder):
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


async def test_save_panel_reports_a_folder_it_cannot_write(folder, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    app = make_app(folder)
    async with driving(app) as pilot:
        await start_training(app, pilot)
        press(app, "s")
        await wait_for(pilot, lambda: showing(app, SavePanel), "the save panel")
        app.screen.query_one("#save-folder", Input).value = str(blocker / "sub")
        await pilot.pause(0.05)
        press(app, "enter")
        status = app.screen.query_one("#save-status", Static)
        await wait_for(pilot, lambda: "Not saved" in str(status.render()), "the panel's message")
        assert "cannot create" in str(status.render())
        step = app.handle.trainer.step
        await wait_for(pilot, lambda: app.handle.trainer.step > step, "the run to go on")


async def test_load_panel_explains_a_file_it_cannot_load(folder):
    folder.mkdir(parents=True)
    (folder / "broken.pt").write_bytes(b"PK\x03\x04 not really a checkpoint")
    (folder / "notes.pt").write_text("hello")
    app = make_app(folder)
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


async def test_quitting_during_a_run_asks_then_leaves_last_pt(folder):
    app = make_app(folder)
    async with driving(app) as pilot:
        await start_training(app, pilot)
        session = app.handle
        press(app, "ctrl+c")
        await wait_for(pilot, lambda: showing(app, ConfirmModal), "the confirmation")
        press(app, "n")
        await wait_for(pilot, lambda: showing(app, DashboardScreen), "the dashboard again")
        assert session.active
        press(app, "q")
        await wait_for(pilot, lambda: showing(app, ConfirmModal), "the confirmation")
        press(app, "y")
        await wait_for(pilot, lambda: not app.is_running, "the app to exit", timeout=20)
    assert not session.active and (Path(session.view.run_dir) / "last.pt").is_file()
    assert session.result.state == "stopped"


async def test_sigterm_saves_last_pt_and_exits_with_its_code(folder):
    app = make_app(folder)
    async with driving(app) as pilot:
        await start_training(app, pilot)
        session = app.handle
        app.on_signal(signal.SIGTERM)
        await wait_for(pilot, lambda: not app.is_running, "the app to exit", timeout=20)
    assert app.exit_code == 128 + signal.SIGTERM
    assert (Path(session.view.run_dir) / "last.pt").is_file()


async def test_new_run_saves_stops_and_returns_to_setup(folder):
    app = make_app(folder)
    async with driving(app) as pilot:
        await start_training(app, pilot)
        session = app.handle
        press(app, "n")
        await wait_for(pilot, lambda: showing(app, ConfirmModal), "the confirmation")
        press(app, "y")
        await wait_for(pilot, lambda: showing(app, SetupScreen), "the setup screen", timeout=20)
        assert not session.active and (Path(session.view.run_dir) / "last.pt").is_file()
        assert app.handle is None


async def test_help_and_command_palette_reach_every_action(folder):
    app = make_app(folder)
    async with driving(app) as pilot:
        await start_training(app, pilot)
        press(app, "question_mark")
        await wait_for(pilot, lambda: showing(app, HelpModal), "the keys")
        keys = {row[0] for row in app.screen.rows}
        assert {"space", "s", "l", "e", "n", "q", "?"} <= keys
        press(app, "escape")
        await wait_for(pilot, lambda: showing(app, DashboardScreen), "the dashboard")
        titles = {command.title for command in app.get_system_commands(app.dashboard)}
        assert {"Pause or resume", "Save checkpoint", "Load checkpoint", "Live tweaks", "New run", "Keys",
                "Quit"} <= titles
        press(app, "ctrl+p")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "CommandPalette", "the command palette")
        for key in "live tweaks":
            press(app, key if key != " " else "space")
        await pilot.pause(0.5)
        press(app, "enter")
        await wait_for(pilot, lambda: showing(app, TweakPanel), "the tweak panel from the palette")


async def test_a_diverging_run_pauses_with_the_fault_and_advice(folder):
    app = make_app(folder, preset="sine-regression", **{"optimizer.name": "sgd", "optimizer.lr": 100})
    async with driving(app) as pilot:
        await wait_for(pilot, lambda: app.setup_screen.base is not None, "the preset")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: app.handle is not None and app.handle.view.fault is not None,
                       "the fault", timeout=30)
        await wait_for(pilot, lambda: app.dashboard.fault.display, "the fault banner")
        banner = str(app.dashboard.fault.render())
        assert "not finite" in banner or "nan" in banner or "inf" in banner
        assert "learning rate" in banner
        assert app.handle.view.state == "paused" and app.handle.active
        assert "Fault:" in log_text(app)


async def test_a_finished_run_dims_the_keys_that_act_on_a_run_and_the_palette_says_why(folder):
    app = make_app(folder, epochs=2)
    async with driving(app) as pilot:
        await start_training(app, pilot)
        await wait_for(pilot, lambda: app.handle.view.state == "finished", "the end of the run")
        assert "Finished" in status_text(app)
        await pilot.pause(0.1)
        shown = footer_actions(app)
        assert shown["pause"] is False and shown["save"] is False and shown["tweak"] is False, shown
        assert shown["new_run"] and shown["app.load"], "what a finished run still allows stays lit"
        await pilot.press("space")
        assert app.handle.view.state == "finished" and isinstance(app.screen, DashboardScreen)
        commands = {command.title: command for command in app.get_system_commands(app.dashboard)}
        commands["Pause or resume"].callback()
        await pilot.pause(0.05)
        assert any("No run is training" in str(n.message) for n in app._notifications)


async def test_resume_option_opens_the_run_paused_with_its_history(folder):
    from tui_trainer.engine.trainer import Trainer
    from tui_trainer.presets import load_config

    config = load_config("iris-linear", {"checkpoint.dir": str(folder), "epochs": 3})
    result = Trainer(config).run()
    app = make_app(folder)
    app.options.resume = result.checkpoint
    async with driving(app) as pilot:
        await wait_for(pilot, lambda: app.handle is not None and app.handle.view.state == "paused",
                       "the resumed run, paused", timeout=30)
        view = app.handle.view
        assert view.step == result.step and len(view.loss) > 0 and len(view.val_loss) == 3
        assert isinstance(app.screen, DashboardScreen)
        await wait_for(pilot, lambda: "Resumed at epoch" in log_text(app), "the resume in the log")


async def test_what_the_app_holds_is_kept_out_of_full_collections_while_a_run_shows(folder):
    """A full pass of the garbage collector over the app's heap (torch, Textual) took 100-150 ms of the UI
    thread, felt by the training beside it; once a run is on screen the app's objects are frozen, and
    leaving the app thaws them."""
    import gc

    app = make_app(folder)
    async with driving(app) as pilot:
        await start_training(app, pilot)
        await wait_for(pilot, lambda: gc.get_freeze_count() > 0, "the app's objects to be frozen")
    assert gc.get_freeze_count() == 0
