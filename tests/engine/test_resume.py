"""Exact resume: N steps straight equal k steps, a stop, and N-k steps in a fresh process, bit for bit on
the CPU (parameters, optimizer state, schedule, metrics)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tui_trainer.engine.checkpoints import load_checkpoint
from tui_trainer.engine.events import Progress, RunStarted
from tui_trainer.engine.metrics import read_metrics
from tui_trainer.engine.trainer import Trainer

RESUME = """
import json, sys
import torch
from tui_trainer.config import config_from_dict
from tui_trainer.engine.checkpoints import load_checkpoint
from tui_trainer.engine.events import RunStarted
from tui_trainer.engine.trainer import Trainer

torch.set_num_threads(int(sys.argv[1]))
for path in sys.argv[2:]:
    started = []
    try:
        config = config_from_dict(load_checkpoint(path)["config"], source=path)
        trainer = Trainer(config, lambda event: isinstance(event, RunStarted) and started.append(event),
                          resume_from=path)
        finished = trainer.run()
        result = {"state": finished.state, "step": finished.step, "checkpoint": finished.checkpoint,
                  "start_step": started[0].start_step, "history": len(started[0].history)}
    except Exception as error:
        result = {"error": f"{type(error).__name__}: {error}"}
    print(json.dumps({"path": path, **result}), flush=True)
"""


def resume_in_fresh_process(checkpoints: list[Path], extra_path: Path | None = None) -> dict[str, dict]:
    """Resume each checkpoint to the end in one new Python process (not the one that trained them),
    with this process's thread count so that the arithmetic is the same."""
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(extra_path), env.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-c", RESUME, str(torch.get_num_threads()), *map(str, checkpoints)],
                            capture_output=True, text=True, env=env, timeout=600, cwd=checkpoints[0].parent)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {line["path"]: line for line in lines}


def assert_same_state(straight: dict, resumed: dict) -> None:
    assert straight["model"].keys() == resumed["model"].keys()
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name
    optimizer_a, optimizer_b = straight["optimizer"], resumed["optimizer"]
    assert optimizer_a["param_groups"] == optimizer_b["param_groups"]
    assert optimizer_a["state"].keys() == optimizer_b["state"].keys()
    for index, state in optimizer_a["state"].items():
        assert state.keys() == optimizer_b["state"][index].keys()
        for key, value in state.items():
            other = optimizer_b["state"][index][key]
            assert torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other, (index, key)
    assert straight["scheduler"] == resumed["scheduler"]
    for key in ("epoch", "position", "step", "best", "best_value", "best_epoch", "stopping_best", "bad_epochs",
                "last_val", "last_train"):
        assert straight["trainer"][key] == resumed["trainer"][key], key
    assert torch.equal(straight["trainer"]["epoch_order_state"], resumed["trainer"]["epoch_order_state"])
    assert torch.equal(straight["rng"]["torch"], resumed["rng"]["torch"])


def interrupt(config, stop_at: int, tag: str) -> dict:
    """Run config straight, then again stopped after stop_at steps; returns both run folders."""
    straight = Trainer(config, run_id=f"{tag}-straight")
    finished = straight.run()
    assert finished.state == "finished"
    assert 0 < stop_at < finished.step
    interrupted = Trainer(config, run_id=f"{tag}-interrupted")

    def stop_at_step(event):
        if isinstance(event, Progress) and event.step == stop_at:
            interrupted.controls.stop(reason="test")

    interrupted.on_event = stop_at_step
    stopped = interrupted.run()
    assert stopped.state == "stopped" and stopped.step == stop_at
    mid = load_checkpoint(interrupted.run_dir / "last.pt")
    assert mid["trainer"]["step"] == stop_at
    return {"straight": straight.run_dir, "interrupted": interrupted.run_dir, "total": finished.step,
            "stop_at": stop_at, "position": mid["trainer"]["position"], "steps_per_epoch": straight.steps_per_epoch}


def check_resumed(case: dict, result: dict) -> None:
    """The resumed run's last.pt holds the straight run's state bit for bit, and metrics.jsonl the same numbers."""
    last = case["interrupted"] / "last.pt"
    assert "error" not in result, result
    assert result["state"] == "finished" and result["step"] == case["total"]
    assert result["start_step"] == case["stop_at"] and result["history"] > 0
    assert Path(result["checkpoint"]) == last
    assert_same_state(load_checkpoint(case["straight"] / "last.pt"), load_checkpoint(last))
    expected = [strip_time(record) for record in read_metrics(case["straight"] / "metrics.jsonl")]
    got = [strip_time(record) for record in read_metrics(case["interrupted"] / "metrics.jsonl")]
    assert got == expected


def compare_straight_and_resumed(config, stop_at: int, extra_path: Path | None = None) -> dict:
    case = interrupt(config, stop_at, "run")
    last = case["interrupted"] / "last.pt"
    check_resumed(case, resume_in_fresh_process([last], extra_path)[str(last)])
    return case


def strip_time(record: dict) -> dict:
    timing = ("time", "elapsed_s", "samples_per_s", "eta_s")
    return {key: value for key, value in record.items() if key not in timing}


def test_digits_mlp_with_dropout_stopped_mid_epoch(make_config):
    config = make_config("digits-mlp", epochs=2, logging__every_steps=1)
    assert config.model.options["dropout"] > 0
    where = compare_straight_and_resumed(config, stop_at=30)
    assert where["position"] == 30 - where["steps_per_epoch"] > 0, "stopped in the middle of epoch 2"


def test_digits_cnn_with_warmup_and_cosine_stopped_in_the_warmup(make_config):
    config = make_config("digits-cnn", epochs=2, logging__every_steps=1)
    assert config.scheduler.name == "cosine" and config.scheduler.warmup_steps == 20
    where = compare_straight_and_resumed(config, stop_at=11)
    assert where["position"] == 11


def test_stop_at_an_epoch_boundary(make_config):
    config = make_config("digits-mlp", epochs=2, logging__every_steps=1)
    where = compare_straight_and_resumed(config, stop_at=23)
    assert where["steps_per_epoch"] == 23
    assert where["position"] == 0


IN_MEMORY = ["digits-cnn", "digits-mlp", "spirals-mlp", "sine-regression", "diabetes-regression", "iris-linear"]
SCHEDULERS = {
    "onecycle": {"name": "onecycle", "max_lr": 0.01},
    "plateau": {"name": "plateau", "factor": 0.5, "patience": 0},
    "step-warmup": {"name": "step", "step_size": 1, "gamma": 0.5, "warmup_steps": 5},
}


@pytest.fixture(scope="module")
def slow_batch(tmp_path_factory):
    """Every in-memory shipped preset and each scheduler, stopped in the middle of epoch 2, then all resumed in
    one fresh process (one start of Python and torch instead of nine)."""
    from tui_trainer import presets

    folder = tmp_path_factory.mktemp("resume")
    cases = {}
    for preset in IN_MEMORY:
        config = presets.load_config(preset, {"device": "cpu", "checkpoint.dir": str(folder), "epochs": 2,
                                              "logging.every_steps": 1})
        probe = Trainer(config)
        probe.setup()
        steps = probe.steps_per_epoch
        cases[preset] = interrupt(config, steps + steps // 2 + 1, preset)
    for name, scheduler in SCHEDULERS.items():
        config = presets.load_config("digits-mlp", {"device": "cpu", "checkpoint.dir": str(folder), "epochs": 3,
                                                    "logging.every_steps": 1, "scheduler": scheduler})
        cases[name] = interrupt(config, 35, name)
    results = resume_in_fresh_process([case["interrupted"] / "last.pt" for case in cases.values()])
    return {key: (case, results[str(case["interrupted"] / "last.pt")]) for key, case in cases.items()}


@pytest.mark.slow
@pytest.mark.parametrize("preset", IN_MEMORY)
def test_every_in_memory_preset_resumes_exactly(preset, slow_batch):
    case, result = slow_batch[preset]
    assert 0 < case["position"] < case["steps_per_epoch"], "stopped in the middle of an epoch"
    check_resumed(case, result)


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
def test_each_scheduler_resumes_exactly(scheduler, slow_batch):
    case, result = slow_batch[scheduler]
    check_resumed(case, result)
    assert load_checkpoint(case["interrupted"] / "last.pt")["scheduler"] is not None


@pytest.mark.slow
def test_dataloader_data_resumes_exactly(fake_torchvision, make_config):
    config = make_config("mnist-cnn", {"data.options.download": False, "data.batch_size": 16, "epochs": 2,
                                       "data.num_workers": 0, "model.options.channels": [8],
                                       "model.options.hidden": 16, "logging.every_steps": 1})
    where = compare_straight_and_resumed(config, stop_at=8, extra_path=fake_torchvision)
    assert where["position"] == 2


def test_resume_from_the_checkpoint_of_a_longer_run_branches(make_config):
    config = make_config("iris-linear", epochs=3, checkpoint={"every_epochs": 1, "keep_last": 5})
    first = Trainer(config)
    first.run()
    events = []
    second = Trainer(config, events.append, resume_from=first.run_dir / "epoch-0001.pt")
    finished = second.run()
    assert finished.state == "finished" and finished.step == 24
    assert second.run_dir != first.run_dir and second.run_dir.name.startswith(first.run_dir.name + "-from-s8")
    started = next(event for event in events if isinstance(event, RunStarted))
    assert started.start_step == 8 and started.start_epoch == 2
    steps = [record["step"] for record in read_metrics(second.run_dir / "metrics.jsonl")
             if record["type"] == "progress"]
    assert steps == sorted(steps) and steps[-1] == 24
    original = [record["step"] for record in read_metrics(first.run_dir / "metrics.jsonl")
                if record["type"] == "progress"]
    assert original[-1] == 24 and len(original) == len(set(original))
