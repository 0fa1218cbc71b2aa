"""A full or read-only checkpoint folder: a clear message, training goes on, nothing saved before is damaged."""

import errno
import os

import pytest

from tui_trainer.config import config_from_dict
from tui_trainer.engine import checkpoints
from tui_trainer.engine.events import CheckpointFailed, CheckpointSaved, EpochEnded, RunFinished
from tui_trainer.engine.trainer import Trainer


def _config(tmp_path, epochs=4):
    return config_from_dict({
        "name": "disk", "task": "classification", "data": {"source": "iris", "batch_size": 16},
        "model": {"name": "linear"}, "loss": {"name": "cross_entropy"}, "epochs": epochs,
        "checkpoint": {"dir": str(tmp_path / "ck"), "every_epochs": 1, "keep_last": 10},
    })


@pytest.mark.parametrize(("code", "phrase"), [(errno.ENOSPC, "the disk is full"),
                                                (errno.EROFS, "Read-only file system"),
                                                (errno.EACCES, "Permission denied")])
def test_failing_disk_keeps_training_and_earlier_checkpoints(tmp_path, monkeypatch, code, phrase):
    events = []
    real_fdopen = os.fdopen
    state = {"files": 0}

    class FillingDisk:
        """A checkpoint's temporary file on a disk that fills up: some bytes land, then the write fails."""

        def __init__(self, file):
            self.file = file

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def write(self, data):
            self.file.write(b"PK\x03\x04 partial")
            raise OSError(code, os.strerror(code))

        def __getattr__(self, name):
            return getattr(self.file, name)

    def fdopen_that_fails_after_two(descriptor, *args, **kwargs):
        file = real_fdopen(descriptor, *args, **kwargs)
        if not os.path.basename(os.readlink(f"/proc/self/fd/{descriptor}")).startswith(checkpoints.TEMP_PREFIX):
            return file  # os.fdopen is everyone's: only checkpoints' temporary files are on the failing disk
        state["files"] += 1
        return file if state["files"] <= 2 else FillingDisk(file)

    monkeypatch.setattr(checkpoints.os, "fdopen", fdopen_that_fails_after_two)
    result = Trainer(_config(tmp_path), events.append).run()

    assert result.state == "finished", "training goes on when a save fails"
    assert [event.epoch for event in events if isinstance(event, EpochEnded)] == [1, 2, 3, 4]
    saved = [event for event in events if isinstance(event, CheckpointSaved)]
    failed = [event for event in events if isinstance(event, CheckpointFailed)]
    assert len(saved) == 2 and failed
    for event in failed:
        assert phrase in event.message and "previous checkpoint is untouched" in event.message
        assert "\n" not in event.message
    run_dirs = list((tmp_path / "ck").iterdir())
    assert len(run_dirs) == 1
    run_dir = run_dirs[0]
    for event in saved:
        checkpoints.load_checkpoint(event.path)  # the ones written before the disk failed still load
    assert not list(run_dir.glob(f"{checkpoints.TEMP_PREFIX}*")), "no partial files left behind"
    assert isinstance(events[-1], RunFinished) and events[-1].checkpoint == saved[-1].path


def test_unwritable_checkpoint_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    config = config_from_dict({
        "task": "classification", "data": {"source": "iris"}, "model": {"name": "linear"},
        "loss": {"name": "cross_entropy"}, "checkpoint": {"dir": str(blocker / "sub")},
    })
    from tui_trainer.config import ConfigError

    with pytest.raises(ConfigError) as caught:
        Trainer(config).run()
    assert "checkpoint.dir" in str(caught.value) and "cannot create" in str(caught.value)


def test_save_to_a_folder_that_cannot_exist_reports_and_keeps_training(tmp_path):
    events = []
    trainer = Trainer(_config(tmp_path, epochs=2), events.append)
    blocker = tmp_path / "plain-file"
    blocker.write_text("x")
    trainer.controls.save(str(blocker / "manual.pt"))
    result = trainer.run()
    assert result.state == "finished"
    failed = [event for event in events if isinstance(event, CheckpointFailed)]
    assert failed and "cannot write here" in failed[0].message
