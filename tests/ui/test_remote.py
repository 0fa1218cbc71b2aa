"""The app on a real detached run, end to end through its socket: attach draws the whole history then follows
it live; the dashboard's keys steer it (pause, resume, live lr, save); d, quitting and a dropped terminal leave
it training; a re-attach shows no gap; quitting can also save and stop it, and its last.pt resumes detached.
The same flows on scripted runs (the runs panel, n, lost runs, loads) are in test_remote_lifecycle.py.

The tests of this module share one detached run, in order; the one before the last stops it. The last kills a
run of its own."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from textual.widgets import Input

from tests.reliability.app_helpers import Terminal
from tests.ui.conftest import driving, press, showing, wait_for
from tests.ui.remote_helpers import app_with, attach_app, cleaned, launch, records, state, wait_until
from tui_trainer.engine.events import Progress, RunStarted
from tui_trainer.ui.screens.checkpoints import SavePanel
from tui_trainer.ui.screens.dashboard import DashboardScreen
from tui_trainer.ui.screens.leave import LeaveModal
from tui_trainer.ui.screens.tweaks import TweakPanel
from tui_trainer.ui.socket_handle import SocketHandle

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    folder = tmp_path_factory.mktemp("remote") / "checkpoints"
    with cleaned(folder):
        yield launch(folder)


@pytest.fixture
def seen(monkeypatch):
    """Every event the app's relay thread received, in order."""
    events = []
    relay = SocketHandle.on_event

    def spy(self, event):
        events.append(event)
        relay(self, event)

    monkeypatch.setattr(SocketHandle, "on_event", spy)
    return events


def log_text(app) -> str:
    return "\n".join(app.dashboard.log_view.texts)


def status_text(app) -> str:
    return str(app.dashboard.status.render())


async def attached(app, pilot) -> SocketHandle:
    await wait_for(pilot, lambda: app.handle is not None and app.handle.view.run_id, "the run's history")
    assert isinstance(app.handle, SocketHandle) and isinstance(app.screen, DashboardScreen)
    return app.handle


async def test_attach_draws_the_history_then_follows_and_steers_the_run(shared):
    run_dir = shared.run_dir
    wait_until(lambda: len(records(run_dir, "progress")) >= 3, "some history in metrics.jsonl")
    history = len(records(run_dir, "progress"))
    app = attach_app(run_dir)
    async with driving(app) as pilot:
        session = await attached(app, pilot)
        view = session.view
        assert view.loss.count >= history, "the whole history is drawn"
        assert view.run_id == shared.run_id and view.preset == "iris-linear"
        step = view.step
        await wait_for(pilot, lambda: view.step > step, "live steps")
        await wait_for(pilot, lambda: "Running" in status_text(app), "the running state")

        press(app, "space")
        await wait_for(pilot, lambda: view.state == "paused" and state(run_dir) == "paused", "the run to pause")
        paused_at = view.step
        await pilot.pause(0.4)
        assert view.step == paused_at and "Paused" in status_text(app)

        press(app, "e")
        await wait_for(pilot, lambda: showing(app, TweakPanel), "the tweak panel")
        app.screen.query_one("#tweak-lr", Input).value = "0.0123"
        await pilot.pause(0.05)
        press(app, "enter")
        await wait_for(pilot, lambda: any(r["changes"] == {"lr": 0.0123}
                                          for r in records(run_dir, "hyperparameters_changed")),
                       "the lr change in the engine's metrics.jsonl")
        await wait_for(pilot, lambda: "lr 0.1 -> 0.0123" in log_text(app), "the change in the log")
        assert view.tweaks and view.hyperparameters["lr"] == 0.0123

        press(app, "s")
        await wait_for(pilot, lambda: showing(app, SavePanel), "the save panel")
        app.screen.query_one("#save-name", Input).value = "remote"
        await pilot.pause(0.05)
        press(app, "enter")
        saved = Path(run_dir) / "remote.pt"
        await wait_for(pilot, lambda: saved.is_file() and isinstance(app.screen, DashboardScreen), "remote.pt")
        await wait_for(pilot, lambda: f"Saved manual checkpoint {saved}" in log_text(app), "the save in the log")

        press(app, "space")
        await wait_for(pilot, lambda: view.state == "running" and state(run_dir) == "running", "the run to resume")
        await wait_for(pilot, lambda: view.step > paused_at, "steps after resuming")

        press(app, "d")
        await wait_for(pilot, lambda: not app.is_running, "the app to exit on d")
    assert session.released and not session.active
    assert state(run_dir) == "running"
    count = len(records(run_dir, "progress"))
    wait_until(lambda: len(records(run_dir, "progress")) > count + 2, "the run to train on without the app")


async def test_reattach_shows_no_gap_and_quitting_leaves_the_run_training(shared, seen):
    run_dir = shared.run_dir
    app = attach_app(run_dir)
    async with driving(app) as pilot:
        session = await attached(app, pilot)
        await wait_for(pilot, lambda: len([e for e in seen if isinstance(e, Progress)]) >= 3, "live progress")
        started = next(event for event in seen if isinstance(event, RunStarted))
        assert any(record["type"] == "hyperparameters_changed" for record in started.history)
        steps = [record["step"] for record in started.history if record["type"] == "progress"]
        steps += [event.step for event in seen if isinstance(event, Progress)]
        on_disk = [record["step"] for record in records(run_dir, "progress")]
        assert steps == on_disk[: len(steps)], "history and live events together are every record, in order"
        await wait_for(pilot, lambda: session.view.loss.count >= len(steps), "every record drawn")

        press(app, "q")
        await wait_for(pilot, lambda: showing(app, LeaveModal) and app.screen.focused, "the question")
        assert app.screen.focused.id == "leave", "leaving it running is the default"
        press(app, "enter")
        await wait_for(pilot, lambda: not app.is_running, "the app to exit")
    assert state(run_dir) == "running" and not session.active


@pytest.mark.parametrize("how", ["hang-up", "SIGTERM"])
def test_a_dropped_terminal_or_sigterm_leaves_the_detached_run_training(shared, tmp_path, how):
    run_dir = Path(shared.run_dir)
    terminal = Terminal(["attach", run_dir.name, "--checkpoint-dir", str(run_dir.parent)], tmp_path)
    try:
        wait_until(lambda: b"Running" in terminal.output or terminal.process.poll() is not None,
                   "the dashboard on the run", timeout=60)
        assert terminal.process.poll() is None, terminal.output.decode(errors="replace")[-2000:]
        if how == "SIGTERM":
            terminal.process.send_signal(signal.SIGTERM)
        else:
            terminal.hang_up()  # as when an SSH connection drops: the kernel sends SIGHUP
        code = terminal.process.wait(timeout=30)
    finally:
        terminal.close()
    assert code == 128 + (signal.SIGTERM if how == "SIGTERM" else signal.SIGHUP)
    assert state(run_dir) == "running"
    assert not (run_dir / "last.pt").exists(), "the run was not stopped"
    if how == "SIGTERM":
        assert b"goes on in the background" in terminal.output


async def test_quitting_can_save_and_stop_the_run(shared):
    run_dir = Path(shared.run_dir)
    app = attach_app(run_dir)
    async with driving(app) as pilot:
        session = await attached(app, pilot)
        press(app, "ctrl+q")
        await wait_for(pilot, lambda: showing(app, LeaveModal), "the question")
        press(app, "s")
        await wait_for(pilot, lambda: not app.is_running, "the app to exit once the run is saved", timeout=30)
    assert session.result is not None and session.result.state == "stopped"
    assert session.result.checkpoint == str(run_dir / "last.pt") and (run_dir / "last.pt").is_file()
    wait_until(lambda: state(run_dir) == "stopped", "run.json to say stopped")


async def test_resuming_its_last_pt_detached_continues_in_the_same_folder_paused(shared):
    run_dir = Path(shared.run_dir)
    assert state(run_dir) == "stopped", "the run stopped in the test before"
    app = app_with(resume=str(run_dir / "last.pt"), detach=True)
    async with driving(app) as pilot:
        await wait_for(pilot, lambda: isinstance(app.handle, SocketHandle) and app.handle.view.state == "paused",
                       "the resumed run, paused", timeout=90)
        session = app.handle
        assert session.run_dir == str(run_dir), "a run's own last.pt continues in its folder"
        assert state(run_dir) == "paused" and session.view.loss.count >= len(records(run_dir, "progress")) > 0


async def test_a_killed_engine_shows_as_lost_with_its_exit_status(tmp_path):
    """The socket closes without a RunFinished: the app reads how the run ended from its run.json."""
    with cleaned(tmp_path / "checkpoints") as folder:
        info = launch(folder)
        app = attach_app(info.run_dir)
        async with driving(app) as pilot:
            session = await attached(app, pilot)
            await wait_for(pilot, lambda: session.view.step > 0, "live steps")
            os.kill(info.pid, signal.SIGKILL)
            await wait_for(pilot, lambda: session.view.state == "lost", "the lost state", timeout=20)
            assert "Lost" in status_text(app) and "killed by SIGKILL" in log_text(app)
            assert session.lost_because() == "killed by SIGKILL" and app.is_running
