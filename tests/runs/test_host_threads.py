"""The host sizes torch's threads once per run, for every way a run is hosted, and says so: in RunStarted (and
so in --json and the app), in run.json and in each checkpoint, whose count a resume takes again (the count
changes the order floats are summed in: a resume stays bit for bit). The CPUs are faked (affinity, no quota,
nothing busy) so the rule's answer is known."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from tui_trainer.engine.checkpoints import load_checkpoint, read_info
from tui_trainer.engine.events import Progress, RunStarted
from tui_trainer.headless import run_headless
from tui_trainer.launch import LaunchOptions
from tui_trainer.presets import load_config
from tui_trainer.runs import cpu_share
from tui_trainer.runs.host import RunHost
from tui_trainer.runs.hosting import Hosting
from tui_trainer.runs.registry import load_run_info


@pytest.fixture(autouse=True)
def cpus(monkeypatch):
    """A machine of CPUs the test picks (cpus.set(n)), no cgroup quota, none busy; torch's count put back."""
    threads = torch.get_num_threads()
    # Whatever an earlier test in this process left: torch at a count it starts with, nothing set by us.
    torch.set_num_threads(os.cpu_count() or 1)
    monkeypatch.setattr(cpu_share, "_SET_BY_US", None)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cpu_share, "cgroup_cpu_limit", lambda *args, **kwargs: None)
    monkeypatch.setattr(cpu_share.BusySample, "others", lambda self, min_window_s=0.0: 0.0)

    class Cpus:
        def set(self, count: int) -> None:
            monkeypatch.setattr(cpu_share, "affinity_cpus", lambda: frozenset(range(count)))

    machine = Cpus()
    machine.set(1)
    yield machine
    torch.set_num_threads(threads)


def host_run(folder: Path, resume_from: Path | None = None, **overrides) -> tuple[RunHost, list, list[int]]:
    """A short headless-hosted run: its host, its events, and torch's count at each progress event."""
    events, counts = [], []

    def listen(event) -> None:
        events.append(event)
        if isinstance(event, Progress):
            counts.append(torch.get_num_threads())

    config = load_config("iris-linear", {"checkpoint.dir": str(folder), "device": "cpu", "epochs": 2,
                                         "logging.every_steps": 1, **overrides})
    host = RunHost(config, Hosting.shell(), resume_from=resume_from, listeners=[listen])
    assert host.run().state == "finished"
    return host, events, counts


def started(events: list) -> RunStarted:
    return next(event for event in events if isinstance(event, RunStarted))


def test_a_run_says_its_threads_in_run_started_run_json_and_its_checkpoints(tmp_path, cpus):
    cpus.set(2)
    host, events, counts = host_run(tmp_path / "ck")
    expected = {"intra_op": 2, "cpus": 2, "busy": 0, "ranks": 1, "set_by": "auto", "loader_worker": 1}
    assert {key: started(events).threads[key] for key in expected} == expected
    assert set(counts) == {2}, "the count stays as decided for the whole run"
    assert load_run_info(host.run_dir).threads == host.threads.to_dict()
    assert load_checkpoint(host.run_dir / "last.pt")["meta"]["torch_threads"] == 2
    assert read_info(host.run_dir / "last.pt").torch_threads == 2


def test_a_resume_takes_the_count_its_checkpoint_recorded(tmp_path, cpus):
    first, _, _ = host_run(tmp_path / "ck")  # one CPU: one thread
    cpus.set(2)  # the rule alone would now take two
    resumed, events, counts = host_run(tmp_path / "ck", resume_from=first.run_dir / "last.pt", epochs=4)
    assert (started(events).threads["intra_op"], started(events).threads["set_by"]) == (1, "checkpoint")
    assert counts and set(counts) == {1}
    assert load_checkpoint(resumed.run_dir / "last.pt")["meta"]["torch_threads"] == 1


def test_threads_the_user_sets_on_resume_win_over_the_recorded_count(tmp_path, cpus):
    first, _, _ = host_run(tmp_path / "ck")
    _, events, counts = host_run(tmp_path / "ck", resume_from=first.run_dir / "last.pt", epochs=4, threads=2)
    assert (started(events).threads["intra_op"], started(events).threads["set_by"]) == (2, "preset")
    assert set(counts) == {2}


def test_omp_num_threads_wins_and_torch_is_left_as_it_read_it(tmp_path, cpus, monkeypatch):
    cpus.set(2)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)  # what torch made of it at import
    _, events, counts = host_run(tmp_path / "ck")
    assert (started(events).threads["intra_op"], started(events).threads["set_by"]) == (1, "OMP_NUM_THREADS")
    assert set(counts) == {1}


def test_a_checkpoint_written_before_the_count_was_recorded_still_loads_and_resumes(tmp_path, cpus):
    first, _, _ = host_run(tmp_path / "ck")
    old = tmp_path / "old.pt"
    payload = torch.load(first.run_dir / "last.pt", weights_only=True)
    del payload["meta"]["torch_threads"]
    torch.save(payload, old)
    assert read_info(old).error is None and read_info(old).torch_threads is None
    cpus.set(2)
    _, events, counts = host_run(tmp_path / "ck", resume_from=old, epochs=4)
    assert (started(events).threads["intra_op"], started(events).threads["set_by"]) == (2, "auto")
    assert set(counts) == {2}


def test_headless_names_its_threads_on_its_start_line_and_in_json(tmp_path, cpus):
    cpus.set(2)
    preset = {"checkpoint.dir": str(tmp_path / "ck"), "device": "cpu", "epochs": 1}
    out = NotATerminal()
    assert run_headless(LaunchOptions(preset="iris-linear", overrides=preset), out=out) == 0
    assert out.lines()[0].endswith("; torch threads 2 of 2 CPUs")
    out = NotATerminal()
    assert run_headless(LaunchOptions(preset="iris-linear", overrides={**preset, "threads": 1}, json=True),
                        out=out) == 0
    (first,) = [event for event in map(json.loads, out.lines()) if event["type"] == "run_started"]
    assert (first["threads"]["intra_op"], first["threads"]["set_by"]) == (1, "preset")


class NotATerminal:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def lines(self) -> list[str]:
        return self.text.splitlines()
