"""Checkpoint files written beside the training: one at a time, in order, each reported once, on one
writer thread that the run ends."""

from __future__ import annotations

import threading

import pytest
import torch

from tui_trainer.engine import checkpoints
from tui_trainer.engine.background_writes import BackgroundWrites, Serialized
from tui_trainer.engine.checkpoints import serialize


def _writers() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "checkpoint-writer"]


def _read(path):
    return torch.load(path, weights_only=True)


def test_writes_land_in_order_on_one_thread_and_are_reported_once(tmp_path):
    writes = BackgroundWrites()
    for epoch in (1, 2, 3):
        checkpoint = Serialized(serialize({"weights": torch.full((3,), float(epoch))}), epoch, epoch * 10)
        writes.submit(tmp_path / f"epoch-{epoch}.pt", checkpoint, "epoch")
        assert len(_writers()) == 1
        written = writes.finished(wait=True)
        assert (written.path, written.epoch, written.step, written.error) == (
            str(tmp_path / f"epoch-{epoch}.pt"), epoch, epoch * 10, None)
        assert written.size == (tmp_path / f"epoch-{epoch}.pt").stat().st_size
        assert writes.finished(wait=True) is None
    assert torch.equal(_read(tmp_path / "epoch-2.pt")["weights"], torch.full((3,), 2.0))
    writes.close()
    assert not _writers()


def test_a_second_write_waits_for_the_first_to_be_collected(tmp_path):
    writes = BackgroundWrites()
    writes.submit(tmp_path / "a.pt", Serialized(serialize({"x": 1}), 1, 1), "epoch")
    with pytest.raises(RuntimeError, match="collect the write under way"):
        writes.submit(tmp_path / "b.pt", Serialized(serialize({"x": 2}), 2, 2), "epoch")
    writes.close()
    assert writes.finished(wait=True).error is None and (tmp_path / "a.pt").exists()


def test_a_failed_write_is_reported_with_its_reason_and_the_old_file_stays(tmp_path, monkeypatch):
    target = tmp_path / "best.pt"
    checkpoints.save_checkpoint(target, {"x": "old"})
    real_save = checkpoints.save_checkpoint

    def full_disk(path, data):
        raise checkpoints.CheckpointError(path, "not saved: the disk is full; the previous checkpoint is untouched")

    monkeypatch.setattr(checkpoints, "save_checkpoint", full_disk)
    writes = BackgroundWrites()
    writes.submit(target, Serialized(serialize({"x": "new"}), 4, 40), "best")
    written = writes.finished(wait=True)
    writes.close()
    assert written.size is None and "disk is full" in written.error and written.reason == "best"
    monkeypatch.setattr(checkpoints, "save_checkpoint", real_save)
    assert _read(target)["x"] == "old"


def test_the_writer_lets_go_of_a_checkpoints_bytes_once_it_is_written(tmp_path):
    """Up to 64 MB of model and optimizer state: not held until the next write comes."""
    import io
    import weakref

    buffer = io.BytesIO()
    torch.save({"weights": torch.zeros(1000)}, buffer)
    kept = weakref.ref(buffer)
    data = buffer.getbuffer()
    del buffer
    writes = BackgroundWrites()
    writes.submit(tmp_path / "epoch-1.pt", Serialized(data, 1, 10), "epoch")
    del data
    assert writes.finished(wait=True).error is None
    assert kept() is None
    writes.close()
