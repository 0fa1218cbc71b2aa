"""The setup screen: presets fill the form, wrong values are flagged beside their field and block the
start, Ctrl+R and Enter on Start start the run, a config the run refuses at its start comes back as its
field, and the screen opens without importing torch. Runs are scripted (tests/ui/fake_handle.py); that a real
run refuses fp16 on a CPU and the form marks precision, in the app's thread and in an engine process, is
tests/runs/test_start_errors.py's."""

from __future__ import annotations

import subprocess
import sys

from textual.widgets import Input, OptionList, Select, Static

from tests.ui.conftest import driving, make_app, scripted_app, showing, start_scripted, wait_for
from tests.ui.fake_handle import steps
from tui_trainer.config import ConfigError
from tui_trainer.ui.screens.dashboard import DashboardScreen
from tui_trainer.ui.screens.setup import SetupScreen


def field_error(app, name: str) -> str:
    error = app.setup_screen.query_one(f"#error-{name}", Static)
    return str(error.render()) if error.display else ""


async def test_presets_fill_the_form_with_choices_that_fit(folder):
    app = make_app(folder, preset="iris-linear")
    async with driving(app) as pilot:
        setup = app.setup_screen
        await wait_for(pilot, lambda: setup.base is not None, "the preset")
        values = setup.values()
        assert values["model"] == "linear" and values["optimizer"] == "sgd" and values["lr"] == "0.1"
        assert values["epochs"] == "100000" and values["checkpoint_dir"] == str(folder)
        model_choices = [value for _, value in setup.query_one("#model", Select)._options]
        assert "cnn" not in model_choices and "mlp" in model_choices
        options = setup.query_one("#preset-list", OptionList)
        options.focus()
        options.highlighted = options.get_option_index("digits-mlp")
        await pilot.press("enter")
        await wait_for(pilot, lambda: setup.values()["model"] == "mlp", "digits-mlp in the form")
        values = setup.values()
        assert values["optimizer"] == "adam" and values["lr"] == "0.002" and values["batch_size"] == "64"
        await wait_for(pilot, lambda: "1,438 training samples" in str(setup.query_one("#preset-summary").render()),
                       "the training set's size")
        assert app.handle is None


async def test_wrong_values_are_flagged_beside_the_field_and_block_the_start(folder):
    app = make_app(folder)
    async with driving(app) as pilot:
        setup = app.setup_screen
        await wait_for(pilot, lambda: setup.base is not None, "the preset")
        lr = setup.query_one("#lr", Input)
        lr.focus()
        await pilot.press(*["backspace"] * 5, "a", "b", "c")
        await wait_for(pilot, lambda: field_error(app, "lr"), "the lr error")
        assert field_error(app, "lr") == "optimizer.lr: input should be a valid number; given 'abc'"
        assert lr.has_class("-invalid")
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert isinstance(app.screen, SetupScreen) and app.handle is None
        lr.value = "0"
        setup.query_one("#epochs", Input).value = "0"
        await pilot.pause()
        assert field_error(app, "lr").startswith("optimizer.lr: input should be greater than 0")
        assert field_error(app, "epochs").startswith("epochs: input should be greater than or equal to 1")
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert app.handle is None
        lr.value = "0.05"
        setup.query_one("#epochs", Input).value = "3"
        await pilot.pause()
        assert field_error(app, "lr") == "" and field_error(app, "epochs") == "" and setup.check_result.ok
        assert setup.check_result.config.optimizer.lr == 0.05


async def test_a_batch_larger_than_the_training_set_blocks_the_start(folder):
    app = make_app(folder)
    async with driving(app) as pilot:
        setup = app.setup_screen
        await wait_for(pilot, lambda: setup.base is not None, "the preset")
        setup.query_one("#batch_size", Input).value = "1000"
        await wait_for(pilot, lambda: field_error(app, "batch_size"), "the batch size error")
        assert field_error(app, "batch_size") == "data.batch_size: 1000 is larger than the training set (120 samples)"
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert app.handle is None


async def test_enter_on_start_starts_the_run_with_the_forms_values(folder):
    app, handles = scripted_app(folder)
    async with driving(app) as pilot:
        await wait_for(pilot, lambda: app.setup_screen.base is not None, "the preset")
        app.setup_screen.query_one("#epochs", Input).value = "7"
        app.setup_screen.query_one("#start").focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: showing(app, DashboardScreen) and handles.made, "the dashboard")
        run = handles.last
        run.play(*steps(1, 2))
        await wait_for(pilot, lambda: app.handle is run and run.view.step == 2, "training steps")
    assert run.config.epochs == 7 and app.runs.from_setup


async def test_start_option_opens_the_dashboard_at_once(folder):
    app, handles = scripted_app(folder, start=True)
    async with driving(app) as pilot:
        await wait_for(pilot, lambda: handles.made and app.handle is handles.last and app.handle.view.run_id,
                       "the run")
        assert isinstance(app.screen, DashboardScreen)


REFUSED = ConfigError("", "precision", "fp16 needs a CUDA device; this machine has none (device auto)")
"""What the trainer raises for fp16 on a CPU (the form cannot know: the device is "auto")."""


async def test_a_config_the_run_refuses_in_the_apps_thread_returns_to_the_form_with_the_field_marked(folder):
    app, handles = scripted_app(folder)
    handles.run_error = REFUSED
    async with driving(app) as pilot:
        await wait_for(pilot, lambda: app.setup_screen.base is not None, "the preset")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: showing(app, SetupScreen) and field_error(app, "precision"),
                       "the form with the precision flagged")
        assert "fp16 needs a CUDA device" in field_error(app, "precision")
        assert app.setup_screen.query_one("#precision").has_class("-invalid")
        assert app.handle is None and app.dashboard is None and not handles.last.active
        assert any(note.title == "Could not start" for note in app._notifications)
        await pilot.press("ctrl+r")
        assert len(handles.made) == 1, "the marked field blocks the start until it is changed"


async def test_a_config_the_engine_process_refuses_keeps_the_form_with_the_field_marked(folder):
    app, handles = scripted_app(folder, in_thread=False)
    handles.start_error = REFUSED
    async with driving(app) as pilot:
        await wait_for(pilot, lambda: app.setup_screen.base is not None, "the preset")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: field_error(app, "precision"), "the precision flagged")
        assert showing(app, SetupScreen) and "fp16 needs a CUDA device" in field_error(app, "precision")
        assert app.handle is None and app.dashboard is None and not handles.made
        assert len(handles.started) == 1


def test_the_setup_screen_does_not_import_torch():
    code = ("import sys; import tui_trainer.ui.app, tui_trainer.ui.screens.setup; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


async def test_80x24_without_colour_renders_every_field(folder, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app, handles = scripted_app(folder)
    async with driving(app, size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.setup_screen.base is not None, "the preset")
        await pilot.pause()
        screen = app.screen.region
        for name in ("model", "loss", "optimizer", "lr", "epochs", "batch_size", "device", "precision"):
            region = app.setup_screen.query_one(f"#{name}").region
            assert region.width >= 20 and screen.contains_region(region), name
        run = await start_scripted(app, handles, pilot)
        run.play(*steps(1, 12))
        await wait_for(pilot, lambda: run.view.step == 12, "steps on screen")
        dashboard = app.screen
        regions = [dashboard.query_one(f"#{name}").region
                   for name in ("status", "loss-chart", "metric-chart", "devices", "log")]
        for region in regions:
            assert region.area > 0 and screen.contains_region(region)
        for index, region in enumerate(regions):
            assert all(not region.overlaps(other) for other in regions[index + 1:])
