"""The app's default: each run trains in an engine process of its own that ends with the app.

The screens are the same as for a run in the app's thread; what differs is where the run lives, so these
tests check that it is another process, that it is steered like any run, that leaving saves and stops it
(no orphan left behind), and that `d` lets it go on by itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.ui.conftest import driving, make_app, press, showing, start_training, wait_for
from tests.ui.remote_helpers import cleaned, records, state, wait_until
from tui_trainer.detached.client import RunClient
from tui_trainer.engine.checkpoints import load_checkpoint
from tui_trainer.engine.controls import Stop
from tui_trainer.runs.registry import read_run_info
from tui_trainer.ui.screens.confirm import ConfirmModal
from tui_trainer.ui.screens.setup import SetupScreen
from tui_trainer.ui.socket_handle import SocketHandle

pytestmark = pytest.mark.slow


async def test_a_run_trains_in_its_own_process_is_steered_and_quitting_saves_it(tmp_path):
    with cleaned(tmp_path / "ck") as folder:
        app = make_app(folder, in_thread=False, **{"logging.every_ms": 100})
        async with driving(app) as pilot:
            await start_training(app, pilot, steps=1)
            session = app.handle
            assert isinstance(session, SocketHandle) and session.ends_with_app
            await wait_for(pilot, lambda: session.engine_pid is not None, "the engine's hello")
            assert session.engine_pid != os.getpid()
            run_dir = Path(session.run_dir)
            assert read_run_info(run_dir).detached is False, "run.json: a run of the app, not a detached one"

            press(app, "space")
            await wait_for(pilot, lambda: session.view.state == "paused", "the engine to pause")
            paused_at = session.view.step
            await pilot.pause(0.5)
            assert session.view.step == paused_at, "no step while paused"
            press(app, "space")
            await wait_for(pilot, lambda: session.view.step > paused_at, "training to go on")

            press(app, "ctrl+q")
            await wait_for(pilot, lambda: showing(app, ConfirmModal), "the save-and-quit question")
            press(app, "y")
            await wait_for(pilot, lambda: session.finished.is_set(), "the run to save and stop", timeout=30)
        assert state(run_dir) == "stopped"
        assert load_checkpoint(run_dir / "last.pt")["meta"]["reason"] == "last"


async def test_d_lets_the_engine_process_go_on_by_itself(tmp_path):
    with cleaned(tmp_path / "ck") as folder:
        app = make_app(folder, in_thread=False, **{"logging.every_ms": 100})
        async with driving(app) as pilot:
            await start_training(app, pilot, steps=1)
            session = app.handle
            run_dir = Path(session.run_dir)
            press(app, "d")
            await wait_for(pilot, lambda: showing(app, SetupScreen), "the setup screen")
            assert session.finished.is_set() and session.result is None
        # The app is gone: the run still trains, and says it is detached now.
        seen = len(records(run_dir, "progress"))
        wait_until(lambda: len(records(run_dir, "progress")) > seen + 2, "more progress after the app left")
        assert state(run_dir) == "running"
        wait_until(lambda: read_run_info(run_dir).detached, "run.json to say detached", timeout=60)
        client = RunClient(read_run_info(run_dir))
        try:
            client.send(Stop(save=True, reason="test over"))
            wait_until(lambda: state(run_dir) == "stopped", "the run to stop", timeout=60)
        finally:
            client.close()
        assert (run_dir / "last.pt").exists()
