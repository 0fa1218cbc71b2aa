"""Disk trouble in the app: a save folder that cannot exist (a path under a regular file: tests run as
root, so permissions would not stop the write) and a disk that fills up in the middle of a save. The
panel says why, the run goes on, and every checkpoint saved before stays as it was.

The folder that cannot exist is refused by the panel before the run is asked anything: that test drives a
scripted run (tests/ui/fake_handle.py). The disk that fills up is the engine's to survive: a real run."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch
from textual.widgets import Input, Static

from tests.reliability.app_helpers import Tally, file_digest
from tests.ui.conftest import (  # noqa: F401
    _no_training_thread_left,
    driving,
    make_app,
    press,
    scripted_app,
    showing,
    start_scripted,
    start_training,
    wait_for,
)
from tests.ui.fake_handle import steps
from tui_trainer.engine.checkpoints import TEMP_PREFIX, load_checkpoint
from tui_trainer.engine.controls import Save
from tui_trainer.ui.screens.checkpoints import SavePanel
from tui_trainer.ui.screens.dashboard import DashboardScreen

TALLY = Tally("test_app_disk")


@pytest.fixture
def folder(tmp_path) -> Path:
    return tmp_path / "checkpoints"


def save_status(app) -> str:
    return str(app.screen.query_one("#save-status", Static).render())


async def open_save_panel(app, pilot, name: str, where: Path | None = None) -> SavePanel:
    press(app, "s")
    await wait_for(pilot, lambda: showing(app, SavePanel), "the save panel")
    panel = app.screen
    panel.query_one("#save-name", Input).value = name
    if where is not None:
        panel.query_one("#save-folder", Input).value = str(where)
    return panel


async def save_first(app, pilot) -> Path:
    await open_save_panel(app, pilot, "first")
    press(app, "enter")
    first = Path(app.handle.view.run_dir) / "first.pt"
    await wait_for(pilot, lambda: first.is_file() and isinstance(app.screen, DashboardScreen), "first.pt")
    return first


async def run_goes_on(app, pilot) -> None:
    trainer = app.handle.trainer
    step = trainer.step
    await wait_for(pilot, lambda: trainer.step > step + 5, "the run to go on")
    assert app.handle.active and app.handle.view.state == "running"


async def test_a_folder_that_cannot_exist_is_reported_in_the_panel(folder, tmp_path):
    blocker = tmp_path / "a-regular-file"
    blocker.write_text("not a folder")
    app, handles = scripted_app(folder)
    async with driving(app) as pilot:
        session = await start_scripted(app, handles, pilot)
        await open_save_panel(app, pilot, "first")
        press(app, "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen) and session.view.last_checkpoint,
                       "first.pt saved")
        for case, where in (("a folder under a regular file", blocker / "sub" / "deeper"),
                            ("a regular file as the folder", blocker)):
            with TALLY.attempt("7 disk", f"save panel: {case}"):
                panel = await open_save_panel(app, pilot, "second", where)
                press(app, "enter")
                await wait_for(pilot, lambda: "Not saved" in save_status(app), "the panel's message")
                status = save_status(app)
                assert str(blocker) in status and "The run goes on" in status, status
                assert "\n" not in status.strip()
                assert app.screen is panel and panel.pending is None
                step = session.view.step
                session.play(*steps(step + 1, step + 3))
                await wait_for(pilot, lambda step=step: session.view.step == step + 3, "the run to go on")
                assert session.active and session.view.state == "running"
                press(app, "escape")
                await wait_for(pilot, lambda: showing(app, DashboardScreen), "the dashboard")
                assert blocker.read_text() == "not a folder"
    with TALLY.attempt("7 disk", "after the refusals: last.pt on quit, first.pt asked for once"):
        saves = [command for command in session.engine.commands if isinstance(command, Save)]
        assert [Path(command.path).name for command in saves] == ["first.pt"], "the run was asked to save a refusal"
        assert session.result.checkpoint == f"{session.run_dir}/last.pt"


@pytest.fixture
def disk(monkeypatch):
    """A disk that fills up in the middle of torch.save while state["full"] is set."""
    state = {"full": False, "failed": 0}
    real_save = torch.save

    def save(obj, file, *args, **kwargs):
        if state["full"]:
            state["failed"] += 1
            file.write(b"PK\x03\x04 the first bytes of a checkpoint")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, file, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    return state


async def test_a_disk_that_fills_up_mid_save_keeps_the_old_file_and_the_run(folder, disk):
    app = make_app(folder)
    async with driving(app) as pilot:
        await start_training(app, pilot)
        first = await save_first(app, pilot)
        digest = file_digest(first)
        run_dir = first.parent
        for case, name, replace in (("a new file", "second", False), ("replacing first.pt", "first", True)):
            with TALLY.attempt("7 disk", f"disk full mid-save: {case}"):
                disk["full"] = True
                panel = await open_save_panel(app, pilot, name)
                press(app, "enter")
                if replace:
                    await wait_for(pilot, lambda: "press Enter again to replace" in save_status(app),
                                   "the question to replace first.pt")
                    press(app, "enter")
                await wait_for(pilot, lambda: "Not saved" in save_status(app), "the panel's message", timeout=20)
                status = save_status(app)
                assert "the disk is full" in status and "previous checkpoint is untouched" in status, status
                assert "The run goes on" in status and app.screen is panel
                disk["full"] = False
                await run_goes_on(app, pilot)
                assert file_digest(first) == digest, "first.pt was damaged"
                assert not (run_dir / "second.pt").exists()
                assert not [path for path in run_dir.iterdir() if path.name.startswith(TEMP_PREFIX)]
                press(app, "escape")
                await wait_for(pilot, lambda: showing(app, DashboardScreen), "the dashboard")
        with TALLY.attempt("7 disk", "a save after the disk has room again"):
            await open_save_panel(app, pilot, "third")
            press(app, "enter")
            await wait_for(pilot, lambda: (run_dir / "third.pt").is_file(), "third.pt")
            assert load_checkpoint(run_dir / "third.pt")["meta"]["step"] > load_checkpoint(first)["meta"]["step"]
        session = app.handle
    assert disk["failed"] == 2
    assert load_checkpoint(Path(session.view.run_dir) / "last.pt")["meta"]["step"] > 0
    assert file_digest(first) == digest
