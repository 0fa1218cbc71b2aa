"""Runs one training run in the full app (App.run_test, 120x40, charts and gauges live) and returns its
steps per second over the training span the engine measures."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from pathlib import Path

import psutil

from tui_trainer.config import RunConfig
from tui_trainer.launch import LaunchOptions
from tui_trainer.yaml_io import dump_yaml

POLL_S = 0.1
"""How often the driver looks at the run. It sleeps rather than calling Pilot.pause, which makes every widget
run a callback and forces a screen update each time: ten a second, that was 40% of the UI thread's work
during a run, a cost of the test harness that no user's app has."""


def _thread_cpu_s() -> dict[int, float]:
    return {thread.id: thread.user_time + thread.system_time for thread in psutil.Process().threads()}


async def _drive(options: LaunchOptions, timeout_s: float, size: tuple[int, int]) -> tuple[float, dict]:
    from tui_trainer.ui.app import TrainerApp

    app = TrainerApp(options)
    ui_thread = threading.main_thread().native_id
    async with app.run_test(size=size) as pilot:
        deadline = time.monotonic() + timeout_s
        started = None
        while time.monotonic() < deadline:
            session = app.handle
            if started is None and session is not None and session.view.step > 0:
                # Training is under way: from here on, how much CPU does the UI's own thread take?
                started = (time.monotonic(), _thread_cpu_s())
            if session is not None and session.finished.is_set():
                break
            await asyncio.sleep(POLL_S)
        ended = (time.monotonic(), _thread_cpu_s())
        session = app.handle
        if session is None or session.result is None or started is None:
            raise RuntimeError("the app's run did not finish")
        result = session.result
        engine_pid = getattr(session, "engine_pid", None)
        await pilot.pause(0.2)
        wall = ended[0] - started[0]
        ui_cpu = ended[1].get(ui_thread, 0.0) - started[1].get(ui_thread, 0.0)
        stats = {"state": result.state, "step": result.step, "ui_thread_cpu_fraction": ui_cpu / wall,
                 "engine_pid": engine_pid, "run_dir": session.view.run_dir}
    return result.step / result.elapsed_s, stats


def run_app_once(config: RunConfig, folder: Path, timeout_s: float = 600.0,
                 size: tuple[int, int] = (120, 40), in_thread: bool = False) -> float:
    """The app as a user gets it: by default the run trains in an engine process the app starts for it;
    in_thread: in a thread of the app's own process (--in-thread). Steps per second by the engine's clock
    (RunFinished.elapsed_s: the whole run, from its first step)."""
    preset = folder / f"{config.name}.yaml"
    preset.write_text(dump_yaml(config.to_dict()))
    import torch

    threads = torch.get_num_threads()  # the app sizes torch's threads for itself; the other runs keep theirs
    try:
        steps_per_s, stats = asyncio.run(_drive(LaunchOptions(preset=str(preset), start=True, in_thread=in_thread),
                                                timeout_s, size))
    finally:
        torch.set_num_threads(threads)
    if stats["state"] != "finished":
        raise RuntimeError(f"the app's run ended {stats['state']}")
    if stats["engine_pid"]:
        _wait_for_exit(stats["engine_pid"], timeout_s=30.0)
    stats["steady_steps_per_s"] = steady_rate(stats["run_dir"])
    LAST_STATS.clear()
    LAST_STATS.update(stats)
    return steps_per_s


LAST_STATS: dict = {}
"""The last run's extra figures (the UI thread's share of a core while training)."""


async def _drive_attached(run_dir: str, timeout_s: float, size: tuple[int, int]) -> dict:
    from tui_trainer.ui.app import TrainerApp

    app = TrainerApp(LaunchOptions(attach=run_dir))
    ui_thread = threading.main_thread().native_id
    async with app.run_test(size=size) as pilot:
        deadline = time.monotonic() + timeout_s
        first = None
        while time.monotonic() < deadline:
            session = app.handle
            view = session.view if session is not None else None
            if first is None and view is not None and view.elapsed_s is not None:
                # The first progress drawn after attaching: the rate is measured from here, by the engine's clock.
                first = (view.step, view.elapsed_s, time.monotonic(), _thread_cpu_s())
            if view is not None and view.finished is not None:
                break
            await asyncio.sleep(POLL_S)
        ended = (time.monotonic(), _thread_cpu_s())
        finished = app.handle.view.finished if app.handle is not None else None
        if finished is None or first is None or finished.state != "finished":
            raise RuntimeError("the detached run did not finish under the app")
        await pilot.pause(0.2)
    wall = ended[0] - first[2]
    return {"steps_per_s": (finished.step - first[0]) / (finished.elapsed_s - first[1]),
            "ui_thread_cpu_fraction": (ended[1].get(ui_thread, 0.0) - first[3].get(ui_thread, 0.0)) / wall}


STEADY_AFTER_S = 2.0
"""The steady-state rate leaves out the run's first seconds (the app attaching and drawing its first frames)."""


def steady_rate(run_dir: str) -> float:
    """Steps per second by the engine's clock between its progress records after STEADY_AFTER_S: what a
    dashboard kept open costs, once it is up."""
    import json

    records = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    progress = [record for record in records
                if record.get("type") == "progress" and record["elapsed_s"] >= STEADY_AFTER_S]
    if len(progress) < 2:
        return float("nan")
    first, last = progress[0], progress[-1]
    return (last["step"] - first["step"]) / (last["elapsed_s"] - first["elapsed_s"])


def _wait_for_exit(pid: int, timeout_s: float) -> None:
    """The engine process writes its last event before it exits (about a second of teardown here): the next
    run in the comparison must not share the CPU with it."""
    with contextlib.suppress(psutil.NoSuchProcess, psutil.TimeoutExpired):
        psutil.Process(pid).wait(timeout_s)


def run_detached_app_once(config: RunConfig, folder: Path, timeout_s: float = 600.0,
                          size: tuple[int, int] = (120, 40)) -> float:
    """The same run in a detached engine process, watched by the full app attached to it."""
    from tui_trainer.detached.launcher import launch_detached

    preset = folder / f"{config.name}.yaml"
    preset.write_text(dump_yaml(config.to_dict()))
    info = launch_detached(LaunchOptions(preset=str(preset), detach=True), pause_on_fault=False)
    stats = asyncio.run(_drive_attached(info.run_dir, timeout_s, size))
    _wait_for_exit(info.pid, timeout_s=30.0)
    stats["steady_steps_per_s"] = steady_rate(info.run_dir)
    LAST_STATS.clear()
    LAST_STATS.update(stats)
    return stats["steps_per_s"]
