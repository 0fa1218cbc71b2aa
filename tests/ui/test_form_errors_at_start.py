"""A run from the form that fails before it starts sends the user back to the form, the field it names marked."""

from __future__ import annotations

import pytest
from textual.widgets import Static

from tests.ui.conftest import driving, showing, wait_for
from tests.ui.fake_handle import ScriptedHandles
from tui_trainer.catalog.datasets import DatasetError
from tui_trainer.catalog.models import ImportedModelError
from tui_trainer.config import ConfigError
from tui_trainer.launch import LaunchOptions
from tui_trainer.ui.app import TrainerApp
from tui_trainer.ui.screens.setup import SetupScreen


class FailingStarts(ScriptedHandles):
    def __init__(self, folder: str, error: BaseException) -> None:
        super().__init__(folder)
        self.error = error

    def train_here(self, config, **kwargs):
        run = super().train_here(config, **kwargs)
        run.error = self.error
        return run


@pytest.mark.parametrize(("error", "field", "shown_at"), [
    (ConfigError("", "data.batch_size", "larger than the 120 training samples"), "data.batch_size",
     "#error-batch_size"),
    (DatasetError("mnist needs torchvision: pip install 'tui-trainer[vision]'"), "data.source", "#form-error"),
    (ImportedModelError("model.import: importing 'mine:net' failed: No module named 'mine'"), "model.import",
     "#error-model"),
])
async def test_a_start_error_names_its_field_on_the_form(folder, error, field, shown_at):
    handles = FailingStarts(str(folder), error)
    app = TrainerApp(LaunchOptions(preset="iris-linear", in_thread=True, overrides={"checkpoint.dir": str(folder)}),
                     handles=handles, drain_interval_s=0.01)
    async with driving(app) as pilot:
        await wait_for(pilot, lambda: app.setup_screen.base is not None, "the preset")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: handles.made and not handles.last.active, "the start to fail")
        await wait_for(pilot, lambda: showing(app, SetupScreen) and app.setup_screen.start_error is not None,
                       "the form again")
        assert app.handle is None and app.dashboard is None
        assert app.setup_screen.start_error.path == field
        text = getattr(error, "message", str(error))
        await wait_for(pilot, lambda: text in str(app.setup_screen.query_one(shown_at, Static).render()),
                       f"the message at {shown_at}")
        assert "[vision]" in text or "[" not in text, "shown literally"
        assert any("Could not start" in note.title for note in app._notifications)
