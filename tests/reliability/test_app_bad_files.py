"""No code from files, in the app and on the command line: a crafted pickle (which would run a command
under a plain torch.load), a truncated file, an empty file, a PNG renamed .pt and a checkpoint of format
version 99 are each refused with their own message, the command never runs, and the app goes on.

The load panel's refusals while a run trains drive a scripted run (tests/ui/fake_handle.py): what they check is
that the panel refuses the file before the run is asked anything; the files themselves are real."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from tests.cli_helpers import ROOT, cli_env, run_main
from tests.reliability.app_helpers import (
    BAD_KINDS,
    Tally,
    crafted_files_are_live,
    good_checkpoint,
    write_bad_checkpoints,
)
from tests.ui.conftest import (  # noqa: F401
    _no_training_thread_left,
    driving,
    press,
    scripted_app,
    showing,
    start_scripted,
    wait_for,
)
from tests.ui.fake_handle import steps
from tui_trainer.launch import LaunchOptions
from tui_trainer.ui.app import TrainerApp
from tui_trainer.ui.screens.checkpoints import LoadPanel
from tui_trainer.ui.screens.dashboard import DashboardScreen
from tui_trainer.ui.screens.setup import SetupScreen

TALLY = Tally("test_app_bad_files")


@pytest.fixture
def folder(tmp_path) -> Path:
    return tmp_path / "checkpoints"


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return good_checkpoint(tmp_path_factory.mktemp("good"))


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "code-ran"


@pytest.fixture
def bad(folder, good, marker) -> dict[str, Path]:
    files = write_bad_checkpoints(folder, good, marker)
    shutil.copy(good, folder / "good.pt")
    return files


def test_the_crafted_files_would_run_code_under_a_plain_load(bad, marker):
    crafted_files_are_live(bad, marker)


def panel_status(panel: LoadPanel) -> str:
    return str(panel.query_one("#load-status", Static).render())


async def choose_row(app: TrainerApp, pilot, path: Path) -> None:
    table = app.screen.query_one("#load-table", DataTable)
    row = table.get_row_index(str(path))
    table.move_cursor(row=row)
    await wait_for(pilot, lambda: table.cursor_row == row, "the cursor on the file")
    press(app, "enter")


async def test_the_load_panel_refuses_each_bad_file_while_the_run_goes_on(folder, bad, marker):
    app, handles = scripted_app(folder)
    async with driving(app) as pilot:
        session = await start_scripted(app, handles, pilot)
        press(app, "l")
        await wait_for(pilot, lambda: showing(app, LoadPanel) and len(app.screen.infos) == len(bad) + 1,
                       "every file listed")
        panel = app.screen
        messages = {}
        for kind, path in bad.items():
            with TALLY.attempt("2 no code from files", f"load panel: {kind}"):
                info = panel.infos[str(path)]
                assert info.error and BAD_KINDS[kind] in info.error, (kind, info.error)
                table = panel.query_one("#load-table", DataTable)
                assert "unreadable" in [str(cell) for cell in table.get_row(str(path))]
                await choose_row(app, pilot, path)
                await wait_for(pilot, lambda path=path: f"Cannot load {path}" in panel_status(panel),
                               f"the panel's message for {kind}")
                messages[kind] = panel_status(panel)
                assert BAD_KINDS[kind] in messages[kind] and "\n" not in messages[kind].strip()
                assert app.screen is panel and app.handle is session and session.active
                assert not marker.exists(), "a command in the file ran"
        assert len(set(messages.values())) == len(bad), "each kind of file has its own message"
        press(app, "escape")
        await wait_for(pilot, lambda: showing(app, DashboardScreen), "the dashboard")
        assert not session.engine.commands, "the run was asked nothing"
        session.play(*steps(1, 3))
        await wait_for(pilot, lambda: session.view.step == 3, "the run to go on")
    assert session.result.checkpoint == f"{session.run_dir}/last.pt"
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["crafted-pickle", "crafted-torch", "newer", "truncated"])
async def test_a_file_replaced_after_listing_is_still_refused(folder, bad, good, marker, kind):
    """The panel checks the file again on Enter: a good file swapped for a bad one is caught then."""
    target = folder / "good.pt"
    app, handles = scripted_app(folder)
    async with driving(app) as pilot:
        await wait_for(pilot, lambda: app.setup_screen.base is not None, "the preset")
        await pilot.press("l")
        await wait_for(pilot, lambda: showing(app, LoadPanel) and str(target) in app.screen.infos,
                       "the listing")
        panel = app.screen
        assert panel.infos[str(target)].error is None
        with TALLY.attempt("2 no code from files", f"load panel, swapped after listing: {kind}"):
            shutil.copy(bad[kind], target)
            await choose_row(app, pilot, target)
            await wait_for(pilot, lambda: "Cannot load" in panel_status(panel), "the panel's message")
            assert BAD_KINDS[kind] in panel_status(panel)
            assert app.screen is panel and app.handle is None and not handles.made
            assert not marker.exists(), "a command in the file ran"
            await pilot.press("escape")
            assert isinstance(app.screen, SetupScreen)


async def test_the_app_opened_on_a_crafted_file_refuses_it_and_stays(folder, bad, marker):
    for kind in ("crafted-pickle", "crafted-torch"):
        with TALLY.attempt("2 no code from files", f"app --resume: {kind}"):
            app = TrainerApp(LaunchOptions(resume=str(bad[kind])))
            async with driving(app) as pilot:
                await wait_for(pilot, lambda app=app: any(note.title == "Cannot resume" for note in app._notifications),
                               "the refusal")
                note = next(note for note in app._notifications if note.title == "Cannot resume")
                assert BAD_KINDS[kind] in note.message
                assert isinstance(app.screen, SetupScreen) and app.handle is None
                await pilot.press("ctrl+q")
                await wait_for(pilot, lambda app=app: not app.is_running, "the app to quit")
            assert app.return_code in (None, 0)
            assert not marker.exists()


def test_headless_resume_refuses_each_bad_file_with_one_line(bad, marker, tmp_path):
    for kind, path in bad.items():
        with TALLY.attempt("2 no code from files", f"--headless --resume: {kind}"):
            code, out, err = run_main(["--headless", "--resume", str(path), "--checkpoint-dir", str(tmp_path / "ck")])
            assert code == 2, (kind, out, err)
            (line,) = err.strip().splitlines()
            assert line.startswith(f"tui-trainer: error: {path}: ") and BAD_KINDS[kind] in line, line
            assert "Traceback" not in out + err
            assert not marker.exists()
    assert not (tmp_path / "ck").exists() or not any((tmp_path / "ck").iterdir()), "no run folder was made"


def test_the_real_command_refuses_the_crafted_files(bad, marker, tmp_path):
    kind = "crafted-torch"  # the zip one: it gets past the quick checks, to torch.load itself
    with TALLY.attempt("2 no code from files", f"--headless --resume, real process: {kind}"):
        result = subprocess.run([sys.executable, "-m", "tui_trainer", "--headless", "--resume", str(bad[kind])],
                                capture_output=True, text=True, cwd=tmp_path, env=cli_env(tmp_path), timeout=120,
                                stdin=subprocess.DEVNULL)
        assert result.returncode == 2
        assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert BAD_KINDS[kind] in result.stderr and "Traceback" not in result.stderr
        assert not marker.exists()
    with TALLY.attempt("2 no code from files", "checkpoints DIR, real process"):
        listing = subprocess.run([sys.executable, "-m", "tui_trainer", "checkpoints", str(bad["empty"].parent)],
                                 capture_output=True, text=True, cwd=ROOT, env=cli_env(tmp_path) | {"COLUMNS": "200"},
                                 timeout=120, stdin=subprocess.DEVNULL)
        assert listing.returncode == 0 and "Traceback" not in listing.stdout + listing.stderr
        for kind in BAD_KINDS:
            assert BAD_KINDS[kind] in listing.stdout, kind
        assert not marker.exists()


def test_checkpoints_listing_names_each_refusal(bad, marker):
    with TALLY.attempt("2 no code from files", "checkpoints DIR --json"):
        code, out, err = run_main(["checkpoints", str(bad["empty"].parent), "--json"])
        assert code == 0 and err == ""
        entries = {Path(entry["path"]).stem: entry for entry in map(json.loads, out.splitlines())}
        assert entries["good"]["error"] is None and entries["good"]["step"] > 0
        for kind in BAD_KINDS:
            assert BAD_KINDS[kind] in entries[kind]["error"], kind
        assert not marker.exists()


async def refused_while_training(folder: Path, name: str, payload: dict, refusal: str) -> None:
    """Save payload as folder/name, choose it in the load panel while a run trains: the panel says `refusal`,
    and the run is neither stopped nor replaced."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    torch.save(payload, path)
    app, handles = scripted_app(folder)
    async with driving(app) as pilot:
        session = await start_scripted(app, handles, pilot)
        press(app, "l")
        await wait_for(pilot, lambda: showing(app, LoadPanel) and str(path) in app.screen.infos, "the listing")
        panel = app.screen
        await choose_row(app, pilot, path)
        await wait_for(pilot, lambda: refusal in panel_status(panel), "the refusal")
        assert app.screen is panel and app.handle is session and session.active and not session.stop_requested
        assert not session.engine.commands and len(handles.made) == 1


@pytest.mark.parametrize("damage", ["trainer", "rng", "history"])
async def test_the_load_panel_checks_what_a_resume_uses_before_stopping_the_run(folder, good, damage):
    """A file whose metadata lists fine but whose trainer state, random state or history would fail the resume
    is refused in the panel: the current run is not stopped for a checkpoint that cannot start."""
    import torch

    payload = torch.load(good, weights_only=True)
    if damage == "trainer":
        payload["trainer"] = {}
    elif damage == "rng":
        payload["rng"] = {"torch": torch.zeros(3, dtype=torch.uint8)}
    else:
        payload["history_json"] = "not json ["
    await refused_while_training(folder, f"damaged-{damage}.pt", payload, "Cannot load: ")


@pytest.mark.parametrize("damage", ["model-shape", "optimizer-groups"])
async def test_the_load_panel_checks_the_file_fits_its_model_before_stopping_the_run(folder, good, damage):
    import torch

    payload = torch.load(good, weights_only=True)
    if damage == "model-shape":
        key = next(iter(payload["model"]))
        payload["model"][key] = torch.zeros(7, 7)
    else:
        payload["optimizer"]["param_groups"].append(dict(payload["optimizer"]["param_groups"][0]))
    await refused_while_training(folder, f"{damage}.pt", payload, "does not fit")
