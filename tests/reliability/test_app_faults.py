"""Numerical faults in the app: a NaN or infinite loss pauses the run with the message on the dashboard,
no checkpoint is written from the diverged weights (earlier ones stay as they were), and the user can
still quit cleanly. An out-of-memory error pauses the run with advice about the batch size; space
resumes it, and it completes.

The NaN and the divergence after a load run for real: what they check is which files the engine writes. The
out-of-memory pause is the app's to show, on a scripted run (tests/ui/fake_handle.py); that the engine pauses
on both kinds of out-of-memory error, retries the step and completes is
tests/engine/test_trainer.py::test_out_of_memory_pauses_with_advice_and_resume_completes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from textual.widgets import Input

from tests.faulty_model import FAULTY
from tests.reliability.app_helpers import Tally, file_digest
from tests.ui.conftest import (  # noqa: F401
    _no_training_thread_left,
    driving,
    make_app,
    press,
    scripted_app,
    showing,
    start_scripted,
    wait_for,
)
from tests.ui.fake_handle import fault_pause, steps
from tui_trainer import presets
from tui_trainer.engine.checkpoints import load_checkpoint
from tui_trainer.engine.events import CheckpointFailed, CheckpointSaved, EpochEnded, RunFailed
from tui_trainer.engine.trainer import Trainer
from tui_trainer.ui.screens.checkpoints import LoadPanel
from tui_trainer.ui.screens.confirm import ConfirmModal
from tui_trainer.ui.screens.dashboard import DashboardScreen
from tui_trainer.ui.screens.tweaks import TweakPanel

TALLY = Tally("test_app_faults")

@pytest.fixture
def folder(tmp_path) -> Path:
    return tmp_path / "checkpoints"


@pytest.fixture
def faulty(user_module):
    name = user_module(FAULTY)

    def overrides(fault: str, at: int, **more) -> dict:
        return {"model": {"import": f"{name}:build", "options": {"fault": fault, "at": at}},
                "optimizer": {"name": "sgd", "lr": 0.1}, "logging.every_steps": 1, **more}

    return overrides


def log_text(app) -> str:
    return "\n".join(app.dashboard.log_view.texts)


def banner(app) -> str:
    return str(app.dashboard.fault.render()) if app.dashboard.fault.display else ""


def checkpoint_files(run_dir: Path) -> dict[str, bytes]:
    return {path.name: file_digest(path) for path in sorted(run_dir.glob("*.pt"))}


def assert_all_finite(run_dir: Path) -> None:
    for path in run_dir.glob("*.pt"):
        payload = load_checkpoint(path)
        assert all(torch.isfinite(value).all() for value in payload["model"].values()), path


async def quit_confirmed(app, pilot) -> None:
    press(app, "ctrl+q")
    await wait_for(pilot, lambda: showing(app, ConfirmModal), "the quit confirmation")
    press(app, "y")
    await wait_for(pilot, lambda: not app.is_running, "the app to exit", timeout=30)


async def test_a_nan_loss_pauses_keeps_earlier_checkpoints_and_quits_cleanly(folder, faulty):
    # iris: 8 steps an epoch; NaN from step 30, after three epochs saved epoch-*.pt and best.pt.
    app = make_app(folder, **faulty("nan", 30, **{"checkpoint.every_epochs": 1, "checkpoint.save_best": True,
                                                   "checkpoint.keep_last": 10}))
    with TALLY.attempt("5 numerical faults", "NaN loss in the app: pause, keep checkpoints, quit"):
        async with driving(app) as pilot:
            await wait_for(pilot, lambda: app.setup_screen.base is not None, "the preset")
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: app.handle is not None and app.handle.view.fault is not None,
                           "the fault", timeout=40)
            session = app.handle
            run_dir = Path(session.view.run_dir)
            await wait_for(pilot, lambda: "training loss is nan at step 30" in banner(app), "the banner")
            assert "lower the learning rate" in banner(app)
            assert session.view.state == "paused" and session.active
            assert session.trainer.step == 30
            before = checkpoint_files(run_dir)
            assert {"epoch-0001.pt", "epoch-0003.pt", "best.pt"} <= set(before), before
            await quit_confirmed(app, pilot)
        assert app.return_code in (None, 0) and app.exit_code == 0
        assert session.result.state == "stopped"
        assert checkpoint_files(run_dir) == before, "a checkpoint saved before the fault changed"
        assert not (run_dir / "last.pt").exists(), "last.pt was written from NaN weights"
        assert "the last good checkpoint is kept" in log_text(app)
        assert_all_finite(run_dir)
        assert load_checkpoint(run_dir / "best.pt")["meta"]["step"] <= 24


def good_sine_run(folder: Path) -> Path:
    """A long sine-regression run stopped after its first epoch: its last.pt."""
    config = presets.load_config("sine-regression", {
        "device": "cpu", "checkpoint.dir": str(folder), "epochs": 1000, "optimizer.name": "sgd",
        "optimizer.lr": 0.01, "logging.every_steps": 1, "checkpoint.every_epochs": 0,
        "checkpoint.save_best": False})

    def stop_after_an_epoch(event) -> None:
        if isinstance(event, EpochEnded):
            trainer.controls.stop(save=True, reason="enough")

    trainer = Trainer(config, stop_after_an_epoch)
    assert trainer.run().state == "stopped"
    return Path(trainer.run_dir) / "last.pt"


async def test_diverging_after_a_load_never_overwrites_the_good_last_pt(folder):
    """Load last.pt, raise the learning rate to 50 and resume: the loss turns infinite while the weights
    are still finite (only huge). The pause shows it, and quitting leaves last.pt as it was."""
    last = good_sine_run(folder)
    good = file_digest(last)
    app = make_app(folder, preset="sine-regression")
    with TALLY.attempt("5 numerical faults", "infinite loss after load + lr 50: last.pt kept"):
        async with driving(app) as pilot:
            await wait_for(pilot, lambda: app.setup_screen.base is not None, "the preset")
            await pilot.press("l")
            await wait_for(pilot, lambda: showing(app, LoadPanel) and app.screen.infos, "the listing")
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.handle is not None and app.handle.view.state == "paused",
                           "the loaded run, paused", timeout=30)
            session = app.handle
            await pilot.press("e")
            await wait_for(pilot, lambda: showing(app, TweakPanel), "the tweak panel")
            app.screen.query_one("#tweak-lr", Input).value = "50"
            await pilot.pause(0.05)
            press(app, "enter")
            await wait_for(pilot, lambda: showing(app, DashboardScreen), "the dashboard")
            press(app, "space")
            await wait_for(pilot, lambda: session.view.fault is not None, "the fault", timeout=30)
            await wait_for(pilot, lambda: "not finite" in banner(app) or " is inf" in banner(app)
                           or " is nan" in banner(app), "the banner")
            assert session.view.state == "paused"
            await quit_confirmed(app, pilot)
        assert session.result.state == "stopped"
        assert file_digest(last) == good, "the good last.pt was overwritten with diverged weights"
        assert "the last good checkpoint is kept" in log_text(app)


def test_an_infinite_loss_with_finite_weights_writes_no_checkpoint(folder):
    """Headless: sgd at lr 50 with the loss read every step turns infinite while the weights are still
    finite; the run fails without writing last.pt from them."""
    config = presets.load_config("sine-regression", {
        "device": "cpu", "checkpoint.dir": str(folder), "optimizer.name": "sgd", "optimizer.lr": 50,
        "logging.every_steps": 1})
    events = []
    with TALLY.attempt("5 numerical faults", "infinite loss, finite weights (headless): nothing saved"):
        trainer = Trainer(config, events.append)
        finished = trainer.run()
        assert finished.state == "failed" and "training loss is" in finished.message
        assert [event.fault for event in events if isinstance(event, RunFailed)] == ["non_finite"]
        assert not [event for event in events if isinstance(event, CheckpointSaved)]
        refused = [event for event in events if isinstance(event, CheckpointFailed)]
        assert [event.reason for event in refused] == ["last"]
        assert "the last good checkpoint is kept" in refused[0].message
        assert not list(Path(trainer.run_dir).glob("*.pt"))


async def test_out_of_memory_pauses_with_batch_size_advice_and_space_completes_the_run(folder):
    app, handles = scripted_app(folder)
    with TALLY.attempt("5 numerical faults", "out of memory in the app: pause, advice, resume"):
        async with driving(app) as pilot:
            session = await start_scripted(app, handles, pilot)
            session.play(*steps(1, 4), *fault_pause("out of memory on cpu at step 4", "out_of_memory",
                                                    "try a smaller batch size (now 16) or a smaller model"),
                         *steps(5, 50))
            session.finish()
            await wait_for(pilot, lambda: "out of memory" in banner(app), "the banner")
            assert "smaller batch size (now 16)" in banner(app)
            assert session.view.state == "paused" and session.view.step == 4 and session.active
            assert "Fault:" in log_text(app)
            press(app, "space")
            await wait_for(pilot, lambda: session.view.state == "finished", "the run to finish")
            assert not app.dashboard.fault.display
            assert session.result.state == "finished" and session.result.step == 50
            await pilot.press("ctrl+q")
            await wait_for(pilot, lambda: not app.is_running, "the app to exit")
        assert app.return_code in (None, 0)
