"""The device panel keeps sampling, at a lower rate, while the run it shows is paused or has ended: its
figures (the process's CPU falls to about nothing) never freeze at the last training value."""

from __future__ import annotations

import pytest

from tests.ui.conftest import driving, make_app, press, start_training, wait_for


async def fresh_sample(app, pilot, what: str) -> None:
    shown = app.dashboard.devices.samples
    await wait_for(pilot, lambda: app.dashboard.devices.samples is not shown, f"a new device sample {what}",
                   timeout=5)


@pytest.mark.slow
async def test_the_device_panel_samples_while_paused_and_again_once_resumed(folder):
    app = make_app(folder)
    app.idle_device_interval_s = 0.3
    async with driving(app) as pilot:
        await start_training(app, pilot)
        await wait_for(pilot, lambda: app.dashboard.devices.samples, "the first device sample")
        press(app, "space")
        await wait_for(pilot, lambda: app.handle.view.state == "paused", "the paused state")
        await fresh_sample(app, pilot, "while paused")
        await fresh_sample(app, pilot, "still paused")
        press(app, "space")
        await wait_for(pilot, lambda: app.handle.view.state == "running", "the run again")
        await fresh_sample(app, pilot, "after resuming")


async def test_the_device_panel_samples_after_the_run_has_finished(folder):
    app = make_app(folder, epochs=2)
    app.idle_device_interval_s = 0.3
    async with driving(app) as pilot:
        await start_training(app, pilot)
        await wait_for(pilot, lambda: app.handle.view.state == "finished", "the end of the run")
        await fresh_sample(app, pilot, "once finished")
        await fresh_sample(app, pilot, "later")
