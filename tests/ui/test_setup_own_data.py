"""The setup screen on presets that bring their own data: a CSV of the user's and a data factory of theirs."""

from __future__ import annotations

from textual.widgets import Static

from tests.ui.conftest import driving, wait_for
from tests.ui.fake_handle import ScriptedHandles
from tui_trainer.launch import LaunchOptions
from tui_trainer.ui.app import TrainerApp


def preset(tmp_path, data: str, task: str = "regression") -> str:
    path = tmp_path / "mine.yaml"
    path.write_text(f"name: mine\ntask: {task}\n{data}\nmodel: {{name: mlp}}\nloss: {{name: mse}}\n"
                    "optimizer: {name: adam, lr: 0.01}\nepochs: 2\n")
    return str(path)


def summary(app) -> str:
    return str(app.setup_screen.query_one("#preset-summary", Static).render())


async def test_a_regression_csv_shows_its_training_samples(tmp_path):
    csv = tmp_path / "houses.csv"
    csv.write_text("rooms,area,price\n" + "".join(f"{i % 5 + 1},{40 + i},{100.5 + i * 3}\n" for i in range(50)))
    path = preset(tmp_path, f"data: {{source: csv, batch_size: 8, val_split: 0.2, options: {{path: '{csv}', "
                            "target: price}}")
    app = TrainerApp(LaunchOptions(preset=path, in_thread=True), handles=ScriptedHandles(str(tmp_path)))
    async with driving(app) as pilot:
        await wait_for(pilot, lambda: "training samples" in summary(app), "the sample count", timeout=30)
        assert "regression · csv" in summary(app) and "40 training samples" in summary(app)


async def test_data_from_the_users_code_is_named_not_shown_as_none(tmp_path):
    path = preset(tmp_path, "data: {import: 'my_data:load', batch_size: 8}")
    app = TrainerApp(LaunchOptions(preset=path, in_thread=True), handles=ScriptedHandles(str(tmp_path)))
    async with driving(app) as pilot:
        await wait_for(pilot, lambda: app.setup_screen.base is not None, "the preset")
        await pilot.pause(0.1)
        assert "data from your code: my_data:load" in summary(app) and "None" not in summary(app)
