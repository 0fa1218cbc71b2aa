"""What the app shows is what was written: names, paths and messages from files and users are never read as
Textual/Rich markup (a `[/x]` in a run id crashed the load panel) and their control characters are escaped."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from textual.widgets import DataTable

from tests.reliability.app_helpers import good_checkpoint
from tests.ui.conftest import _no_training_thread_left, driving, make_app, showing, wait_for  # noqa: F401
from tui_trainer.runs.registry import RunInfo, write_run_info
from tui_trainer.text import literal, printable
from tui_trainer.ui.screens.checkpoints import LoadPanel
from tui_trainer.ui.screens.confirm import ConfirmModal
from tui_trainer.ui.screens.runs import RunsPanel

NAMES = ["[/x] closing", "[bold]loud[/bold]", "x[", "[link=https://example.com]here[/link]", "a\x1b[2Jb",
         "bell\x07", "right\u202eto-left", "two\nlines"]


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return good_checkpoint(tmp_path_factory.mktemp("good"))


def test_printable_escapes_what_a_terminal_would_obey():
    assert printable("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert printable("bell\x07") == "bell\\x07"
    assert printable("right\u202eto-left") == "right\\u202eto-left"
    assert printable("two\nlines") == "two\\nlines"
    assert printable("two\nlines", keep_newlines=True) == "two\nlines"
    assert printable("naïve 日本 😀 [b]") == "naïve 日本 😀 [b]"


def test_literal_never_reads_markup():
    for name in NAMES:
        assert literal(name).plain == printable(name)
        assert not literal(name).spans


def cells(table: DataTable) -> list[str]:
    return [str(cell) for row in range(table.row_count) for cell in table.get_row_at(row)]


async def test_the_load_panel_lists_names_with_markup_literally(good, tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    payload = torch.load(good, weights_only=True)
    for index, name in enumerate(NAMES):
        payload["meta"] = {**payload["meta"], "run_id": name, "preset": name}
        torch.save(payload, folder / f"file-{index}.pt")
    (folder / "weird[").mkdir()
    torch.save(payload, folder / "weird[" / "x].pt")
    app = make_app(folder)
    async with driving(app) as pilot:
        await wait_for(pilot, lambda: app.setup_screen.base is not None, "the preset")
        await pilot.press("l")
        await wait_for(pilot, lambda: showing(app, LoadPanel) and len(app.screen.infos) == len(NAMES) + 1,
                       "every file listed")
        await pilot.pause(0.1)
        shown = cells(app.screen.query_one("#load-table", DataTable))
        for name in NAMES:
            assert printable(name) in shown, name
        assert "x].pt" in shown


async def test_the_runs_panel_lists_names_with_markup_literally(tmp_path):
    folder = tmp_path / "checkpoints"
    for index, name in enumerate(NAMES):
        run_dir = folder / f"run-{index}"
        run_dir.mkdir(parents=True)
        write_run_info(RunInfo(run_id=name, run_dir=str(run_dir), preset=name, state="finished", started_at=index))
    app = make_app(folder)
    async with driving(app) as pilot:
        await wait_for(pilot, lambda: app.setup_screen.base is not None, "the preset")
        await pilot.press("r")
        await wait_for(pilot, lambda: showing(app, RunsPanel) and len(app.screen.infos) == len(NAMES),
                       "every run listed")
        await pilot.pause(0.1)
        shown = "\n".join(cells(app.screen.query_one("#runs-table", DataTable)))
        for name in NAMES:
            assert printable(name).split("\\n")[0] in shown, name


async def test_toasts_and_questions_show_text_as_written(tmp_path):
    app = make_app(tmp_path / "checkpoints")
    async with driving(app) as pilot:
        await wait_for(pilot, lambda: app.setup_screen.base is not None, "the preset")
        app.notify("install it: pip install 'tui-trainer[vision]' [/x] \x1b[2J")
        await wait_for(pilot, lambda: len(app._notifications) > 0, "the toast")
        note = list(app._notifications)[-1]
        assert note.message == "install it: pip install 'tui-trainer[vision]' [/x] \\x1b[2J"
        await pilot.pause(0.1)
        app.push_screen(ConfirmModal("Load [/x] closing\x1b]0;title\x07?"))
        await wait_for(pilot, lambda: showing(app, ConfirmModal), "the question")
        assert str(app.screen.query_one(".panel-text").render()) == "Load [/x] closing\\x1b]0;title\\x07?"
