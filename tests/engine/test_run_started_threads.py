"""RunStarted carries the run's thread counts across a process boundary; JSON from an older engine, without
them, still loads. run.json records them too, and an older run.json without them still loads."""

from __future__ import annotations

import json

import pytest

from tui_trainer.engine.events import RunStarted, event_from_dict
from tui_trainer.runs.cpu_share import ThreadChoice
from tui_trainer.runs.registry import RunFileError, RunInfo, load_run_info, write_run_info

STARTED = dict(run_id="r", run_dir="/tmp/r", preset="p", task="classification", device="cpu", device_name="CPU",
               model="mlp", parameters=10, train_samples=8, val_samples=2, epochs=1, steps_per_epoch=1,
               total_steps=1, start_epoch=1, start_step=0, lr=0.1, config={})
CHOICE = ThreadChoice(1, 1, cpus=2, busy=1)


def test_run_started_with_its_threads_round_trips_through_json():
    event = RunStarted(**STARTED, threads=CHOICE.to_dict())
    back = event_from_dict(json.loads(json.dumps(event.to_dict())))
    assert back == event
    assert ThreadChoice.from_dict(back.threads) == CHOICE


def test_run_started_json_from_an_older_engine_loads_without_threads():
    old = {"type": "run_started", **STARTED}
    assert event_from_dict(json.loads(json.dumps(old))).threads is None


def test_run_json_records_the_threads_and_an_older_one_without_them_loads(tmp_path):
    write_run_info(RunInfo(run_id="r", run_dir=str(tmp_path), state="running", threads=CHOICE.to_dict()))
    assert ThreadChoice.from_dict(load_run_info(tmp_path).threads) == CHOICE
    data = json.loads((tmp_path / "run.json").read_text())
    del data["threads"]
    (tmp_path / "run.json").write_text(json.dumps(data))
    assert load_run_info(tmp_path).threads is None


@pytest.mark.parametrize("threads", [{"intra_op": 0}, {"intra_op": "2"}, {"intra_op": 1, "set_by": "x" * 100}, []])
def test_a_run_json_with_malformed_threads_is_refused(tmp_path, threads):
    write_run_info(RunInfo(run_id="r", run_dir=str(tmp_path), state="running"))
    data = json.loads((tmp_path / "run.json").read_text())
    (tmp_path / "run.json").write_text(json.dumps({**data, "threads": threads}))
    with pytest.raises(RunFileError, match="threads"):
        load_run_info(tmp_path)
