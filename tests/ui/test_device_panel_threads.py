"""The device panel names the run's torch threads, the CPUs it may use and how many were busy, whole at 80
and at 120 columns (shorter forms where the panel is narrow). The threads are the run's RunStarted.threads;
that a run in the app's thread leaves a CPU to the UI is tests/runs/test_cpu_share.py's
test_a_run_in_the_apps_thread_leaves_a_cpu_to_the_ui, and that the host says so in RunStarted is
tests/runs/test_host_threads.py's."""

from __future__ import annotations

import re

import pytest

from tests.ui.conftest import driving, scripted_app, start_scripted, wait_for

SHOWN = re.compile(r"(torch )?threads 1( of 2 CPUs|/2 CPUs|/2) \(1 busy\)")
THREADS = {"intra_op": 1, "inter_op": 1, "loader_worker": 1, "cpus": 2, "busy": 1, "ranks": 1, "set_by": "auto"}
"""What the host decides on 2 CPUs with one kept busy by another process, for a run beside the UI."""


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_device_panel_shows_the_runs_threads_whole(folder, size):
    app, handles = scripted_app(folder)
    handles.started_with["threads"] = THREADS
    async with driving(app, size=size) as pilot:
        await start_scripted(app, handles, pilot)
        await wait_for(pilot, lambda: app.dashboard.devices.samples, "a device sample")
        lines = app.dashboard.devices.render().plain.splitlines()
        assert any(SHOWN.fullmatch(line) for line in lines), lines
