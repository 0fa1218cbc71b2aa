"""The device panel keeps sampling, at a lower rate, while the run it shows is paused or has ended: its
figures (the process's CPU falls to about nothing) never freeze at the last training value."""

from __future__ import annotations

from tests.ui.conftest import driving, scripted_app, start_scripted, wait_for
from tests.ui.fake_handle import steps


async def fresh_sample(app, pilot, what: str) -> None:
    shown = app.dashboard.devices.samples
    await wait_for(pilot, lambda: app.dashboard.devices.samples is not shown, f"a new device sample {what}",
                   timeout=5)


async def test_the_device_panel_samples_while_paused_and_again_once_resumed(folder):
    app, handles = scripted_app(folder)
    app.idle_device_interval_s = 0.3
    async with driving(app) as pilot:
        run = await start_scripted(app, handles, pilot)
        await wait_for(pilot, lambda: app.dashboard.devices.samples, "the first device sample")
        await pilot.press("space")
        await wait_for(pilot, lambda: run.view.state == "paused", "the paused state")
        await fresh_sample(app, pilot, "while paused")
        await fresh_sample(app, pilot, "still paused")
        await pilot.press("space")
        await wait_for(pilot, lambda: run.view.state == "running", "the run again")
        await fresh_sample(app, pilot, "after resuming")


async def test_the_device_panel_samples_after_the_run_has_finished(folder):
    app, handles = scripted_app(folder)
    app.idle_device_interval_s = 0.3
    async with driving(app) as pilot:
        run = await start_scripted(app, handles, pilot)
        run.play(*steps(1, 50))
        run.finish()
        await wait_for(pilot, lambda: run.view.state == "finished", "the end of the run")
        await fresh_sample(app, pilot, "once finished")
        await fresh_sample(app, pilot, "later")
