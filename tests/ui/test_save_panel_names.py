"""The save panel refuses a name the run would prune, hide or clean up, before asking the engine to save."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.app import App
from textual.widgets import Input, Static

from tui_trainer.ui.screens.checkpoints import SavePanel


class Host(App):
    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder
        self.sent: list[str] = []

    def record_save(self, path: str, overwrite: bool = False) -> None:
        self.sent.append(path)

    def on_mount(self) -> None:
        self.push_screen(SavePanel("run-e1-s5.pt", str(self.folder), send=self.record_save, paused=True))


async def try_name(folder: Path, name: str) -> tuple[list[str], str]:
    app = Host(folder)
    async with app.run_test() as pilot:
        await pilot.pause()
        panel = app.screen
        assert isinstance(panel, SavePanel)
        panel.query_one("#save-name", Input).value = name
        panel.save()
        await pilot.pause()
        return app.sent, str(panel.query_one("#save-status", Static).render())


@pytest.mark.parametrize("name", ["epoch-0000-mine", ".tmp-mine", "last", "best.pt", "run.json", "a/b",
                                  "bad\x1b[2Jname", "[b]markup[/b]\u202e", "x" * 300])
async def test_a_reserved_or_unsafe_name_is_refused_before_saving(tmp_path, name):
    sent, status = await try_name(tmp_path, name)
    assert sent == [], "nothing was asked of the engine"
    assert status.startswith("Not saved: checkpoint name") and "allowed: a file name ending in .pt" in status
    assert "\x1b" not in status and "\u202e" not in status
    assert list(tmp_path.iterdir()) == []


async def test_an_ordinary_name_goes_to_the_engine_with_its_suffix(tmp_path):
    sent, status = await try_name(tmp_path, "my-epoch-3")
    assert sent == [str(tmp_path / "my-epoch-3.pt")] and status.startswith("Saving")


async def test_markup_in_a_name_is_shown_as_typed(tmp_path):
    sent, status = await try_name(tmp_path, "[bold]x[red]")
    assert sent == [str(tmp_path / "[bold]x[red].pt")]
    assert "[bold]x[red].pt" in status


async def test_a_folder_path_too_long_to_save_in_is_refused(tmp_path):
    app = Host(tmp_path)
    async with app.run_test() as pilot:
        await pilot.pause()
        panel = app.screen
        panel.query_one("#save-folder", Input).value = str(tmp_path) + "/d" * 3000
        panel.query_one("#save-name", Input).value = "mine"
        panel.save()
        await pilot.pause()
        status = str(panel.query_one("#save-status", Static).render())
    assert app.sent == [] and "longer than 4096 characters" in status
