"""A save command never replaces a file that is already there unless it says so (the save panel asks first)."""

from __future__ import annotations

from tui_trainer.engine.checkpoints import load_checkpoint
from tui_trainer.engine.controls import Controls, Save, command_from_dict
from tui_trainer.engine.events import CheckpointFailed, CheckpointSaved
from tui_trainer.engine.trainer import Trainer
from tui_trainer.presets import load_config


def run_with(tmp_path, command: Save) -> list:
    events: list = []
    controls = Controls()
    controls.send(command)
    config = load_config("iris-linear", {"checkpoint.dir": str(tmp_path / "ck"), "max_steps": 3,
                                         "checkpoint.every_epochs": 0, "checkpoint.save_best": False})
    Trainer(config, events.append, controls=controls).run()
    return events


def test_a_save_onto_an_existing_file_is_refused_and_the_file_kept(tmp_path):
    mine = tmp_path / "mine.pt"
    mine.write_bytes(b"the user's own file")
    events = run_with(tmp_path, Save(path=str(mine)))
    failed = [event for event in events if isinstance(event, CheckpointFailed)]
    assert failed and "exists" in failed[0].message and "overwrite" in failed[0].message
    assert mine.read_bytes() == b"the user's own file"


def test_a_save_that_says_overwrite_replaces_it(tmp_path):
    mine = tmp_path / "mine.pt"
    mine.write_bytes(b"old")
    events = run_with(tmp_path, Save(path=str(mine), overwrite=True))
    assert any(isinstance(event, CheckpointSaved) and event.path == str(mine) for event in events)
    assert load_checkpoint(mine)["meta"]["run_id"], "a checkpoint, not the old bytes"


def test_the_socket_command_carries_overwrite_and_defaults_to_keeping_files():
    assert command_from_dict({"type": "save", "path": "/tmp/x.pt"}) == Save(path="/tmp/x.pt", overwrite=False)
    assert command_from_dict({"type": "save", "path": "/tmp/x.pt", "overwrite": True}).overwrite is True
