"""The app's warm engine: started when the setup screen opens, it trains whatever the form says when the user
starts (not what the form said when it was started), and the app leaves nothing of it behind."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from textual.widgets import Input, OptionList

from tests.detached.test_warm_engine import engine_of, gone, wait_until
from tests.ui.conftest import driving, make_app, wait_for
from tests.ui.remote_helpers import cleaned
from tui_trainer.detached.warm_engine import available
from tui_trainer.ui.handle import Handles

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not available(), reason="needs SO_PASSCRED (Linux)")]


async def test_the_warm_engine_trains_what_the_form_says_when_the_user_starts(tmp_path):
    with cleaned(tmp_path / "ck") as folder:
        app = make_app(folder, preset="iris-linear", in_thread=False)
        async with driving(app) as pilot:
            setup = app.setup_screen
            await wait_for(pilot, lambda: app.handle_source.warm is not None and setup.base is not None,
                           "the warm engine and the preset")
            engine = engine_of(app.handle_source.warm.supervisor.pid)
            presets = setup.query_one("#preset-list", OptionList)
            presets.focus()
            presets.highlighted = presets.get_option_index("spirals-mlp")
            await pilot.press("enter")
            await wait_for(pilot, lambda: setup.base is not None and setup.base.get("name") == "spirals-mlp",
                           "spirals-mlp in the form")
            setup.query_one("#epochs", Input).value = "7"
            setup.query_one("#lr", Input).value = "0.0123"
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: app.handle is not None and app.handle.view.step >= 1, "training",
                           timeout=60)
            handle = app.handle
            assert handle.engine_pid == engine.pid, "the engine that was warm trains the run"
            config = yaml.safe_load((Path(handle.run_dir) / "config.yaml").read_text())
            assert (config["name"], config["epochs"], config["optimizer"]["lr"]) == ("spirals-mlp", 7, 0.0123)
            assert config["checkpoint"]["dir"] == str(folder)


async def test_quitting_with_an_idle_warm_engine_leaves_no_process_and_no_folder(tmp_path):
    folder = tmp_path / "ck"
    app = make_app(folder, in_thread=False)
    async with driving(app) as pilot:
        await wait_for(pilot, lambda: app.handle_source.warm is not None, "the warm engine")
        supervisor = app.handle_source.warm.supervisor.pid
        engine = engine_of(supervisor).pid
        await pilot.press("ctrl+q")
    assert gone(supervisor)
    wait_until(lambda: gone(engine), "the warm engine to end", timeout=10)
    assert not folder.exists() or list(folder.iterdir()) == []


def test_handles_that_start_runs_their_own_way_get_no_warm_engine():
    class Scripted(Handles):
        def start_process(self, launch):
            raise AssertionError("not started in this test")

    handles = Scripted()
    handles.warm_up(in_thread=False)
    assert handles.warm is None
