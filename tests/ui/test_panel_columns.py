"""The runs and load panels show run ids whole, first, even at 80 columns (two runs of one preset started
the same second differ only at the end), times with their date, and the load panel's checkpoints under
the run that wrote them."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import torch
from textual.widgets import DataTable

from tests.reliability.app_helpers import good_checkpoint
from tests.ui.conftest import driving, make_app, showing, wait_for
from tui_trainer.runs.registry import RunInfo, write_run_info
from tui_trainer.ui.screens.checkpoints import LoadPanel
from tui_trainer.ui.screens.runs import RunsPanel

RUNS = ["diabetes-regression-20261201-223814", "diabetes-regression-20261201-223814-2"]
DATED = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d")


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return good_checkpoint(tmp_path_factory.mktemp("good"))


def save(payload: dict, folder: Path, run_id: str, name: str, saved_at: float, epoch: int) -> Path:
    payload = {**payload, "meta": {**payload["meta"], "run_id": run_id, "preset": "diabetes-regression",
                                   "saved_at": saved_at, "epoch": epoch}}
    path = folder / run_id / name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def shown_lines(table: DataTable) -> list[str]:
    """The table's lines as the screen draws them (what is off to the right is not in them)."""
    return [table.render_line(y).text for y in range(table.size.height)]


def cells(table: DataTable, row: int) -> list[str]:
    return [str(cell) for cell in table.get_row_at(row)]


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_load_panel_lists_each_runs_checkpoints_under_its_whole_id(good, tmp_path, size):
    folder = tmp_path / "checkpoints"
    payload = torch.load(good, weights_only=True)
    now = time.time()
    # Interleaved in time: a flat list, newest first, would mix the two runs.
    first_old = save(payload, folder, RUNS[0], "epoch-0001.pt", now - 400, 1)
    second_old = save(payload, folder, RUNS[1], "epoch-0001.pt", now - 300, 1)
    first_new = save(payload, folder, RUNS[0], "last.pt", now - 200, 2)
    second_new = save(payload, folder, RUNS[1], "last.pt", now - 100, 3)
    app = make_app(folder)
    async with driving(app, size=size) as pilot:
        await wait_for(pilot, lambda: app.setup_screen.base is not None, "the preset")
        await pilot.press("l")
        await wait_for(pilot, lambda: showing(app, LoadPanel) and len(app.screen.infos) == 4, "every file listed")
        await pilot.pause(0.1)
        table = app.screen.query_one("#load-table", DataTable)
        keys = [table.coordinate_to_cell_key((row, 0)).row_key.value for row in range(table.row_count)]
        assert keys[1:3] == [str(second_new), str(second_old)] and keys[4:] == [str(first_new), str(first_old)]
        assert cells(table, 0)[0] == RUNS[1] and cells(table, 3)[0] == RUNS[0]
        assert table.cursor_row == 1, "the cursor starts on the newest checkpoint, not on a run's row"
        lines = "\n".join(shown_lines(table))
        for run_id in RUNS:
            assert re.search(rf"\b{re.escape(run_id)}( |$)", lines, re.MULTILINE), f"{run_id} not shown whole"
        assert all(DATED.fullmatch(cells(table, row)[5]) for row in (1, 2, 4, 5)), "a save made today has no date"
        table.move_cursor(row=3)
        await pilot.press("enter")
        assert table.cursor_row == 4 and isinstance(app.screen, LoadPanel), "Enter on a run's row loads nothing"


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_runs_panel_shows_run_ids_whole_and_started_with_its_date(tmp_path, size):
    folder = tmp_path / "checkpoints"
    for index, run_id in enumerate(RUNS):
        run_dir = folder / run_id
        run_dir.mkdir(parents=True)
        write_run_info(RunInfo(run_id=run_id, run_dir=str(run_dir), preset="diabetes-regression", state="stopped",
                               reason="quit", started_at=time.time() - 60 + index, epoch=3, epochs=40, step=30))
    app = make_app(folder)
    async with driving(app, size=size) as pilot:
        await wait_for(pilot, lambda: app.setup_screen.base is not None, "the preset")
        await pilot.press("r")
        await wait_for(pilot, lambda: showing(app, RunsPanel) and len(app.screen.infos) == 2, "both runs listed")
        await pilot.pause(0.1)
        table = app.screen.query_one("#runs-table", DataTable)
        lines = "\n".join(shown_lines(table))
        for run_id in RUNS:
            assert re.search(rf"\b{re.escape(run_id)} +stopped +3/40", lines), f"{run_id}: not whole, or state cut"
        started = [cells(table, row)[6] for row in range(table.row_count)]
        assert all(DATED.fullmatch(text) for text in started), started
