"""Runs one training run in the full app (App.run_test, 120x40, charts and gauges live) and returns its
steps per second over the training span the engine measures (RunFinished.elapsed_s)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tui_trainer.config import RunConfig
from tui_trainer.launch import LaunchOptions
from tui_trainer.yaml_io import dump_yaml


async def _drive(options: LaunchOptions, timeout_s: float, size: tuple[int, int]) -> tuple[float, dict]:
    from tui_trainer.ui.app import TrainerApp

    app = TrainerApp(options)
    async with app.run_test(size=size) as pilot:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            session = app.session
            if session is not None and session.finished.is_set():
                break
            await pilot.pause(0.1)
        session = app.session
        if session is None or session.result is None:
            raise RuntimeError("the app's run did not finish")
        result = session.result
        await pilot.pause(0.2)
        stats = {"state": result.state, "step": result.step}
    return result.step / result.elapsed_s, stats


def run_app_once(config: RunConfig, folder: Path, timeout_s: float = 600.0,
                 size: tuple[int, int] = (120, 40)) -> float:
    preset = folder / f"{config.name}.yaml"
    preset.write_text(dump_yaml(config.to_dict()))
    steps_per_s, stats = asyncio.run(_drive(LaunchOptions(preset=str(preset), start=True), timeout_s, size))
    if stats["state"] != "finished":
        raise RuntimeError(f"the app's run ended {stats['state']}")
    return steps_per_s
