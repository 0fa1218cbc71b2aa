"""The app as the snapshot tests drive it: scripted runs (tests/ui/fake_handle.py) with fixed device figures,
and the waits that bring a screen to a state that draws the same on every machine.

Nothing here trains. What would differ between machines or runs is made fixed: the device panel's sample
(a fake monitor), the run's folder (relative to the test's own folder, see conftest.py), the toasts (cleared)
and the text cursors (not blinking).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input

from tests.ui.conftest import showing, wait_for
from tests.ui.fake_handle import STEPS_PER_EPOCH, ScriptedHandles, ScriptedRun, run_started, steps
from tui_trainer.config import RunConfig
from tui_trainer.engine.devices import DeviceSample
from tui_trainer.launch import LaunchOptions
from tui_trainer.runs.cpu_share import ThreadChoice
from tui_trainer.ui import app as app_module
from tui_trainer.ui.app import TrainerApp
from tui_trainer.ui.handle import Notify, RunHandle
from tui_trainer.ui.screens.dashboard import DashboardScreen

CHECKPOINTS = "checkpoints"
"""The checkpoint folder, relative to the test's folder (the working directory): no tmp path on screen."""
RUN_STAMP = "20261201-120000"
THREADS = ThreadChoice(intra_op=1, inter_op=1, cpus=2, busy=0).to_dict()
CPU_SAMPLE = DeviceSample("cpu", "CPU (2 cores)", process_rss_bytes=412 * 2**20, process_cpu_percent=97.0)


class FixedMonitor:
    """A device monitor that reads no machine: the same sample every time."""

    def __init__(self, device: str) -> None:
        self.device = device

    def sample(self, engine_figures: list[dict[str, Any]] | None = None) -> list[DeviceSample]:
        return [CPU_SAMPLE]


class SnapshotRun(ScriptedRun):
    """A scripted run whose device panel shows fixed figures and whose RunStarted names its threads."""

    def device_monitor(self) -> FixedMonitor:  # type: ignore[override]
        return FixedMonitor(self.view.device)


class SnapshotHandles(ScriptedHandles):
    """ScriptedHandles that make SnapshotRuns."""

    def train_here(self, config: RunConfig, *, notify: Notify, resume_from: str | None = None,
                   start_paused: bool = False) -> RunHandle:
        run_dir = f"{config.checkpoint.dir}/{config.name}-{RUN_STAMP}"
        run = SnapshotRun(notify=notify, name=config.name, run_dir=run_dir, checkpoint_dir=config.checkpoint.dir,
                          start_paused=start_paused, started=self._started(run_dir, config.name))
        self.made.append(run)
        return run

    def reach(self, run_dir: str, *, notify: Notify, pause: bool = False, ends_with_app: bool = False) -> RunHandle:
        name = Path(run_dir).name
        run = SnapshotRun(notify=notify, name=name, run_dir=run_dir, ends_with_app=ends_with_app,
                          can_go_on_alone=True, start_paused=pause, checkpoint_dir=str(Path(run_dir).parent),
                          started=self._started(run_dir, "iris-linear"))
        self.made.append(run)
        return run

    @staticmethod
    def _started(run_dir: str, preset: str) -> Any:
        return run_started(run_id=Path(run_dir).name, run_dir=run_dir, preset=preset, threads=THREADS)


class SnapshotApp(TrainerApp):
    """The real app; once the screenshot is taken and the app closes, its scripted runs end too (the
    snapshot plugin's app.run() waits for every worker thread before it returns)."""

    CSS_PATH = str(Path(app_module.__file__).with_name(TrainerApp.CSS_PATH))  # Textual reads it beside the subclass

    def on_unmount(self) -> None:
        for handle in self.handles:
            if handle.began.is_set() and handle.active:
                handle.leave("snapshot taken")


def snapshot_app(*, in_thread: bool = True, detach: bool = False, resume: str | None = None,
                 ) -> tuple[SnapshotApp, SnapshotHandles]:
    handles = SnapshotHandles(CHECKPOINTS)
    options = LaunchOptions(preset=None if resume else "iris-linear", in_thread=in_thread, detach=detach, resume=resume,
                            overrides={"checkpoint.dir": CHECKPOINTS})
    # No chart cost stretching and no idle device sampling: what is drawn depends only on the events.
    app = SnapshotApp(options, handles=handles, drain_interval_s=0.01, chart_interval_s=0.05, chart_cpu_share=None,
                      device_interval_s=0.2, idle_device_interval_s=3600.0)
    return app, handles


# ---------------------------------------------------------------- reaching a state


async def setup_ready(pilot: Pilot) -> None:
    """The setup screen with its preset loaded, the devices listed and the training set counted."""
    app: TrainerApp = pilot.app  # type: ignore[assignment]
    setup = app.setup_screen
    await wait_for(pilot, lambda: setup.base is not None and setup.devices is not None, "the preset and devices")
    await wait_for(pilot, lambda: setup.train_sizes and not setup.sizing, "the training set's size")
    await no_toasts(pilot)


async def open_run(pilot: Pilot, handles: SnapshotHandles, last_step: int = 30) -> SnapshotRun:
    """Ctrl+R on the setup screen, then the run's first `last_step` steps drawn on the dashboard."""
    app: TrainerApp = pilot.app  # type: ignore[assignment]
    await setup_ready(pilot)
    await pilot.press("ctrl+r")
    await wait_for(pilot, lambda: handles.made and app.handle is handles.last and app.handle.view.run_id
                   and showing(app, DashboardScreen), "the scripted run on the dashboard")
    run = handles.last
    run.play(*steps(1, last_step))
    # The script's last event drawn means every one before it was (an epoch's end comes after its last step).
    if last_step % STEPS_PER_EPOCH == 0:
        await wait_for(pilot, lambda: run.view.epoch_end_step == last_step, f"{last_step} steps and the epoch's end")
    else:
        await wait_for(pilot, lambda: run.view.step == last_step, f"{last_step} steps")
    await dashboard_drawn(pilot)
    return run


async def dashboard_drawn(pilot: Pilot) -> None:
    """Both charts given the run view's latest data, the device panel sampled and the log repainted (the
    caller has waited for the run's last event)."""
    app: TrainerApp = pilot.app  # type: ignore[assignment]
    dashboard, view = app.dashboard, app.handle.view if app.handle else None
    assert dashboard is not None and view is not None
    charts = (dashboard.loss_chart, dashboard.metric_chart)
    # Their data, not their size: plotext draws to the widget's size whenever the layout changes.
    await wait_for(pilot, lambda: dashboard.devices.samples and all(chart.drawn_version == view.chart_version
                                                                     for chart in charts),
                   "the charts and the device panel")
    dashboard.log_view.refresh()  # its repaint waits up to a second after new lines
    await no_toasts(pilot)


async def no_toasts(pilot: Pilot) -> None:
    """Clear the toasts; before a modal opens too: Textual clears them only from the screen on top."""
    pilot.app.clear_notifications()
    await pilot.pause(0.05)


async def settle(pilot: Pilot) -> None:
    """No toasts, no blinking cursor, every widget of the top screen repainted from its current state."""
    app = pilot.app
    await no_toasts(pilot)
    for text_input in app.screen.query(Input):
        text_input.cursor_blink = False
    for widget in app.screen.query("*"):
        widget.refresh()
    await pilot.pause(0.05)
