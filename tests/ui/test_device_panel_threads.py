"""The device panel names the run's torch threads, the CPUs it may use and how many were busy, whole at 80
and at 120 columns (shorter forms where the panel is narrow)."""

from __future__ import annotations

import re

import pytest
import torch

from tests.ui.conftest import driving, make_app, start_training, wait_for
from tui_trainer.runs import cpu_share

SHOWN = re.compile(r"(torch )?threads 1( of 2 CPUs|/2 CPUs|/2) \(1 busy\)")


@pytest.fixture
def two_cpus_one_busy(monkeypatch):
    threads = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cpu_share, "affinity_cpus", lambda: frozenset({0, 1}))
    monkeypatch.setattr(cpu_share, "cgroup_cpu_limit", lambda *args, **kwargs: None)
    monkeypatch.setattr(cpu_share.BusySample, "others", lambda self, min_window_s=0.0: 1.0)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_device_panel_shows_the_runs_threads_whole(folder, two_cpus_one_busy, size):
    app = make_app(folder)
    async with driving(app, size=size) as pilot:
        await start_training(app, pilot)
        panel = app.dashboard.devices
        await wait_for(pilot, lambda: panel.samples and app.handle.view.threads, "a device sample and the threads")
        lines = panel.render().plain.splitlines()
        assert any(SHOWN.fullmatch(line) for line in lines), lines
        assert app.handle.view.threads["intra_op"] == 1, "a run in the app's thread leaves a CPU to the UI"
