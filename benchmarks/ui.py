"""The dashboard's costs: one refresh as a run grows, the app's CPU idle, paused and training, and the
latency from a step's end to its value on screen.

1. refresh: a RunView fed 1e3, 1e5 and 1e7 logged steps (synthetic progress events, one per step: the worst
   case), then one dashboard refresh at 120x40: both charts rebuilt and rendered, the status bar and the
   device panel rendered. Median of N.
2. cpu: the full app (App.run_test) on the setup screen (idle), with a run paused, and training: the
   process's CPU (idle, paused) and the UI thread's own CPU (training), as a share of one core.
3. latency: from the moment the engine emits a progress event (right after the step) to the frame that
   shows it, p50 and p95.
Run: python benchmarks/ui.py [--sizes 1000,100000,10000000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from common import report, workload_config

from tui_trainer.engine.events import EpochEnded, Progress, RunStarted
from tui_trainer.launch import LaunchOptions
from tui_trainer.ui.run_view import RunView
from tui_trainer.yaml_io import dump_yaml


def feed(view: RunView, steps: int, start: int = 0) -> None:
    for step in range(start + 1, start + steps + 1):
        loss = 2.0 / (1 + step / 1000) + 0.05 * ((step * 7919) % 13) / 13
        view.apply(Progress(epoch=1 + step // 1000, step=step, epoch_step=step % 1000, steps_per_epoch=1000,
                            total_steps=10**8, train_loss=loss, train_accuracy=1 - loss / 3, lr=1e-3,
                            samples_per_s=1e5, elapsed_s=step / 1000, eta_s=1.0))
        if step % 1000 == 0:
            view.apply(EpochEnded(epoch=step // 1000, step=step, train={"train_loss": loss},
                                  val={"val_loss": loss * 1.1, "val_accuracy": 1 - loss / 3}, lr=1e-3,
                                  elapsed_s=step / 1000, is_best=False))


def started_event() -> RunStarted:
    return RunStarted(run_id="bench", run_dir="/tmp/bench", preset="bench", task="classification", device="cpu",
                      device_name="CPU", model="mlp", parameters=1000, train_samples=1000, val_samples=100,
                      epochs=100000, steps_per_epoch=1000, total_steps=10**8, start_epoch=1, start_step=0,
                      lr=1e-3, config={"optimizer": {"name": "adam", "lr": 1e-3}})


async def refresh_costs(sizes: list[int], repeats: int) -> dict:
    from tui_trainer.engine.devices import DeviceMonitor
    from tui_trainer.ui.app import TrainerApp
    from tui_trainer.ui.screens.dashboard import DashboardScreen

    results = {}
    view = RunView(task="classification")
    view.apply(started_event())
    fed = 0
    dashboard = DashboardScreen()
    dashboard.view = view
    app = TrainerApp(LaunchOptions())  # the app's own styles lay the dashboard out
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await app.push_screen(dashboard)
        await pilot.pause()
        samples = DeviceMonitor("cpu").sample()
        for size in sizes:
            previous, start = fed, time.perf_counter()
            feed(view, size - previous, previous)
            feed_s = time.perf_counter() - start
            fed = size
            timings = []
            sizes_drawn = [tuple(chart.size) for chart in (dashboard.loss_chart, dashboard.metric_chart)]
            for _ in range(repeats):
                for chart in (dashboard.loss_chart, dashboard.metric_chart):
                    chart.drawn_version = -1
                start = time.perf_counter()
                dashboard.redraw_charts()
                dashboard.update([])
                dashboard.show_devices(samples)
                for widget in (dashboard.loss_chart, dashboard.metric_chart, dashboard.status, dashboard.devices):
                    widget.render()
                timings.append(time.perf_counter() - start)
                await pilot.pause()
            results[size] = {"refresh_ms_median": 1000 * statistics.median(timings), "chart_sizes": sizes_drawn,
                             "refresh_ms_all": [1000 * t for t in timings],
                             "feed_us_per_event": 1e6 * feed_s / max(1, size - previous)}
    return results


def _process_cpu() -> float:
    times = psutil.Process().cpu_times()
    return times.user + times.system


def _thread_cpu(native_id: int) -> float:
    for thread in psutil.Process().threads():
        if thread.id == native_id:
            return thread.user_time + thread.system_time
    return 0.0


async def app_cpu_and_latency(folder: Path, window_s: float, in_thread: bool) -> dict:
    """The app's CPU idle, training and paused, and how long a progress event takes to reach the screen.
    in_thread: the run trains in the app's thread (--in-thread), and the latency runs from the step's end;
    by default it trains in an engine process, and the latency runs from the event's arrival from the
    engine's socket (the hop before it is a local socket write)."""
    from tui_trainer.ui.app import TrainerApp
    from tui_trainer.ui.handle import Session

    config = workload_config("small", str(folder / "ck"), epochs=100000)
    preset = folder / "ui-bench.yaml"
    preset.write_text(dump_yaml(config.to_dict()))
    app = TrainerApp(LaunchOptions(preset=str(preset), in_thread=in_thread))
    figures: dict = {}
    async with app.run_test(size=(120, 40)) as pilot:
        # torch is imported in the background after the first frame; idle means after that.
        while "torch" not in sys.modules:
            await pilot.pause(0.1)
        await pilot.pause(3.0)
        start_wall, start_cpu = time.monotonic(), _process_cpu()
        await asyncio.sleep(window_s)
        figures["idle_setup_cpu_fraction"] = (_process_cpu() - start_cpu) / (time.monotonic() - start_wall)

        emitted: dict[int, float] = {}
        shown: dict[int, float] = {}
        original_on_event = Session.on_event

        def stamped(self, event):
            if isinstance(event, Progress):
                emitted[event.step] = time.monotonic()
            original_on_event(self, event)

        Session.on_event = stamped  # where a run's events enter the app: stamps each progress event
        app.setup_screen.action_start()
        while app.handle is None:  # an engine process takes a few seconds to start
            await pilot.pause(0.05)
        session = app.handle
        while app.dashboard is None or session.view.step == 0:
            await pilot.pause(0.05)
        dashboard = app.dashboard
        original_update = dashboard.update

        def update(lines, note=None):
            original_update(lines, note)
            step = session.view.step
            app.call_after_refresh(lambda: shown.setdefault(step, time.monotonic()))

        dashboard.update = update
        ui_thread = threading.main_thread().native_id
        start_wall, start_ui = time.monotonic(), _thread_cpu(ui_thread)
        await asyncio.sleep(window_s)
        figures["training_ui_thread_cpu_fraction"] = (_thread_cpu(ui_thread) - start_ui) / (
            time.monotonic() - start_wall)
        latencies = sorted(shown[step] - emitted[step] for step in shown if step in emitted)
        figures["latency_samples"] = len(latencies)
        if latencies:
            figures["latency_ms_p50"] = 1000 * latencies[len(latencies) // 2]
            figures["latency_ms_p95"] = 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))]

        app.dashboard.action_pause()
        while session.view.state != "paused":
            await pilot.pause(0.05)
        await pilot.pause(1.0)
        start_wall, start_cpu = time.monotonic(), _process_cpu()
        await asyncio.sleep(window_s)
        figures["paused_cpu_fraction"] = (_process_cpu() - start_cpu) / (time.monotonic() - start_wall)
        session.stop("benchmark done")
        await asyncio.to_thread(session.finished.wait, 60)
        Session.on_event = original_on_event
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,100000,10000000")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--window", type=float, default=5.0, help="seconds each CPU figure is measured over")
    args = parser.parse_args()
    sizes = sorted(int(float(size)) for size in args.sizes.split(","))
    refresh = asyncio.run(refresh_costs(sizes, args.repeats))
    figures = {}
    for mode, in_thread in (("engine_process", False), ("in_thread", True)):
        with tempfile.TemporaryDirectory() as temp:
            for key, value in asyncio.run(app_cpu_and_latency(Path(temp), args.window, in_thread)).items():
                figures[f"{mode}.{key}"] = value
    table = [("logged steps", "refresh ms (median)")]
    table += [(f"{size:,}", f"{values['refresh_ms_median']:.1f}") for size, values in refresh.items()]
    table += [(key, f"{value:.3f}" if isinstance(value, float) else str(value)) for key, value in figures.items()]
    report("ui: dashboard refresh, app CPU, step-to-screen latency", {"refresh": refresh, **figures}, table)


if __name__ == "__main__":
    main()
