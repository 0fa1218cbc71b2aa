"""Back on the setup screen after a run (n, d), the focus is on the preset list, not the field it was on
before the run started: the keys the toast suggests (r lists runs) act as keys, nothing is typed."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from tests.ui.conftest import driving, scripted_app, showing, shown, wait_for
from tui_trainer.ui.screens.confirm import ConfirmModal
from tui_trainer.ui.screens.runs import RunsPanel
from tui_trainer.ui.screens.setup import SetupScreen


async def start_from_field(app, handles, pilot, field: str) -> str:
    """Start a run with the focus in one of the form's text fields; returns the field's text."""
    await wait_for(pilot, lambda: app.setup_screen.base is not None, "the preset to load")
    widget = app.setup_screen.query_one(f"#{field}", Input)
    widget.focus()
    await wait_for(pilot, lambda: app.focused is widget, f"the focus in {field}")
    await pilot.press("ctrl+r")
    await shown(app, handles, pilot)
    return widget.value


async def r_lists_the_runs(app, pilot, field: str, before: str) -> None:
    await wait_for(pilot, lambda: showing(app, SetupScreen), "the setup screen")
    await pilot.pause()
    assert not isinstance(app.focused, Input), f"the focus went back to {app.focused}"
    await pilot.press("r")
    await wait_for(pilot, lambda: showing(app, RunsPanel), "the runs panel")
    assert app.setup_screen.query_one(f"#{field}", Input).value == before


@pytest.mark.parametrize("field", ["epochs", "lr"])
async def test_after_n_the_keys_act_instead_of_landing_in_the_last_field(folder, field):
    app, handles = scripted_app(folder)
    async with driving(app) as pilot:
        before = await start_from_field(app, handles, pilot, field)
        await pilot.press("n")
        await wait_for(pilot, lambda: showing(app, ConfirmModal), "the confirmation")
        await pilot.press("y")
        await r_lists_the_runs(app, pilot, field, before)


async def test_after_d_the_keys_act_instead_of_landing_in_the_last_field(folder):
    app, handles = scripted_app(folder, in_thread=False, detach=True)
    async with driving(app) as pilot:
        before = await start_from_field(app, handles, pilot, "epochs")
        await pilot.press("d")
        await r_lists_the_runs(app, pilot, "epochs", before)
        assert handles.last.released
