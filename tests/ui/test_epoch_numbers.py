"""The app names the epoch a run ended in as its checkpoints and run.json do: at an epoch's end, the epoch
just completed, otherwise the one under way (RunFinished carries it so, with epoch_complete)."""

from __future__ import annotations

from pathlib import Path

from tests.ui.conftest import driving, make_app, press, showing, wait_for
from tests.ui.test_view import started
from tui_trainer.engine.checkpoints import read_info
from tui_trainer.engine.events import EpochEnded, Progress, RunFinished
from tui_trainer.ui.run_view import RunView
from tui_trainer.ui.screens.confirm import ConfirmModal

STEPS_PER_EPOCH = 10


def epoch_end(epoch: int) -> EpochEnded:
    return EpochEnded(epoch=epoch, step=epoch * STEPS_PER_EPOCH, train={"train_loss": 1.0},
                      val={"val_loss": 1.0}, lr=0.1, elapsed_s=1.0, is_best=False)


def progress(epoch: int, step: int) -> Progress:
    return Progress(epoch=epoch, step=step, epoch_step=step - (epoch - 1) * STEPS_PER_EPOCH,
                    steps_per_epoch=STEPS_PER_EPOCH, total_steps=400, train_loss=1.0, train_accuracy=0.5, lr=0.1,
                    samples_per_s=100.0, elapsed_s=1.0, eta_s=2.0)


def finished(state: str, epoch: int, step: int, complete: bool = True) -> RunFinished:
    return RunFinished(state=state, epoch=epoch, step=step, elapsed_s=1.0, best={}, last={}, best_epoch=None,
                       checkpoint="/tmp/r1/last.pt", epoch_complete=complete)


def end_line(view: RunView, *events) -> str:
    lines = []
    for event in events:
        lines = view.apply(event)
    return lines[0].text


def test_a_run_stopped_at_an_epochs_end_names_that_epoch_not_the_next():
    for epochs_done in (1, 12):
        view = RunView()
        view.apply(started(epochs=40, total_steps=400))
        for epoch in range(1, epochs_done + 1):
            view.apply(progress(epoch, epoch * STEPS_PER_EPOCH))
            view.apply(epoch_end(epoch))
        text = end_line(view, finished("stopped", epochs_done, epochs_done * STEPS_PER_EPOCH))
        assert text.startswith(f"Run stopped at epoch {epochs_done}, step {epochs_done * STEPS_PER_EPOCH:,} ")
        assert view.epoch == epochs_done


def test_a_run_stopped_inside_an_epoch_names_the_epoch_under_way():
    for epoch, step in ((1, 1), (16, 157)):
        view = RunView()
        view.apply(started(epochs=40, total_steps=400))
        for done in range(1, epoch):
            view.apply(epoch_end(done))
        view.apply(progress(epoch, step))
        assert end_line(view, finished("stopped", epoch, step, complete=False)).startswith(
            f"Run stopped at epoch {epoch}, step")


def test_a_finished_or_failed_run_at_an_epochs_end_names_its_last_epoch():
    for state, epochs in (("finished", 40), ("finished", 3), ("failed", 7)):
        view = RunView()
        view.apply(started(epochs=40, total_steps=400))
        for epoch in range(1, epochs + 1):
            view.apply(epoch_end(epoch))
        text = end_line(view, finished(state, epochs, epochs * STEPS_PER_EPOCH))
        assert text.startswith(f"Run {state} at epoch {epochs}, ")


def test_a_run_resumed_at_an_epochs_end_and_stopped_at_once_names_the_epoch_it_resumed_after():
    history = [{"type": "epoch_ended", "epoch": epoch, "step": epoch * STEPS_PER_EPOCH, "val": {"val_loss": 1.0}}
               for epoch in range(1, 13)]
    for start_history in (history, []):  # with its history, and without (the engine's count alone)
        view = RunView()
        lines = view.apply(started(epochs=40, total_steps=400, start_epoch=13, start_step=120,
                                   history=start_history))
        assert lines[-1].text.startswith("Resumed at epoch 12, step 120,")
        assert (view.epoch, view.epoch_step) == (12, STEPS_PER_EPOCH), "epoch 12 shows as done, not 13 as begun"
        assert end_line(view, finished("stopped", 12, 120)).startswith("Run stopped at epoch 12, step 120 ")


def test_a_run_resumed_inside_an_epoch_names_the_epoch_under_way():
    view = RunView()
    lines = view.apply(started(epochs=40, total_steps=400, start_epoch=13, start_step=125))
    assert lines[-1].text.startswith("Resumed at epoch 13, step 125,") and view.epoch == 13


async def test_stopping_a_run_loaded_at_an_epochs_end_says_the_epoch_its_checkpoints_say(folder):
    from tui_trainer.engine.trainer import Trainer
    from tui_trainer.presets import load_config

    config = load_config("iris-linear", {"checkpoint.dir": str(folder), "epochs": 2, "checkpoint.every_epochs": 1})
    Trainer(config).run()
    epoch_one = next(Path(folder).glob("*/epoch-0001.pt"))
    app = make_app(folder)
    app.options.resume = str(epoch_one)
    async with driving(app) as pilot:
        await wait_for(pilot, lambda: app.handle is not None and app.handle.view.state == "paused",
                       "the loaded run, paused", timeout=30)
        session = app.handle
        await wait_for(pilot, lambda: "Resumed at epoch" in "\n".join(app.dashboard.log_view.texts), "the resume")
        assert "Resumed at epoch 1, step 8," in "\n".join(app.dashboard.log_view.texts)
        press(app, "ctrl+q")
        await wait_for(pilot, lambda: showing(app, ConfirmModal), "the confirmation")
        press(app, "y")
        await wait_for(pilot, lambda: not app.is_running, "the app to exit once last.pt is saved", timeout=20)
    last = read_info(Path(session.view.run_dir) / "last.pt")
    assert last.epoch == read_info(epoch_one).epoch == 1
    assert session.view.epoch == 1
    assert any(line.startswith(f"{session.view.run_id}: stopped after epoch 1 (step {last.step:,});")
               for line in app.runs.closing_lines()), app.runs.closing_lines()
