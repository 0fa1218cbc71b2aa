"""Saves that fail (a full disk, a folder made read-only mid-run, no memory to serialize) never end a run or
escape as a traceback: each is one CheckpointFailed, training goes on, and the run's end lists what was not
written. A run whose last.pt is missing does not pass for a clean finish: the headless command exits 1."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import pytest

from tui_trainer.engine import checkpoint_policy, checkpoints
from tui_trainer.engine.events import CheckpointFailed, CheckpointSaved, EpochEnded, RunFinished
from tui_trainer.headless import EXIT_FAILED, EXIT_OK, exit_code, print_summary, run_headless
from tui_trainer.launch import LaunchOptions


class FailingFile:
    """A checkpoint's temporary file on a disk that fails: a few bytes land, then every write raises."""

    def __init__(self, file, code: int) -> None:
        self.file, self.code = file, code

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()

    def write(self, data):
        self.file.write(b"PK\x03\x04 partial")
        raise OSError(self.code, os.strerror(self.code))

    def __getattr__(self, name):
        return getattr(self.file, name)


def checkpoint_files(monkeypatch, wrap) -> None:
    """Each checkpoint's temporary file (save_checkpoint's mkstemp) opens as wrap(file, count); other files
    open as usual."""
    real_mkstemp, real_fdopen = checkpoints.tempfile.mkstemp, os.fdopen
    temporary: set[int] = set()
    opened = {"count": 0}

    def mkstemp(*args, **kwargs):
        descriptor, name = real_mkstemp(*args, **kwargs)
        if Path(name).name.startswith(checkpoints.TEMP_PREFIX):  # not run.json's or another file's
            temporary.add(descriptor)
        return descriptor, name

    def fdopen(descriptor, *args, **kwargs):
        file = real_fdopen(descriptor, *args, **kwargs)
        if descriptor not in temporary:
            return file
        temporary.discard(descriptor)
        opened["count"] += 1
        return wrap(file, opened["count"])

    monkeypatch.setattr(checkpoints.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(checkpoints.os, "fdopen", fdopen)


def failing_disk(monkeypatch, code: int = errno.ENOSPC, after: int = 0) -> None:
    """Every checkpoint file after the first `after` fails to be written with OSError(code)."""
    checkpoint_files(monkeypatch, lambda file, count: file if count <= after else FailingFile(file, code))


def read_only_from(monkeypatch, name: str) -> None:
    """The run folder turns read-only when the checkpoint `name` is asked for: no file can be made in it
    from then on (saves land in the order they were asked for, so every earlier one is written)."""
    real_mkstemp = checkpoints.tempfile.mkstemp
    turned = []

    def mkstemp(*args, prefix="", **kwargs):
        if turned or name in prefix:
            turned.append(prefix)
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_mkstemp(*args, prefix=prefix, **kwargs)

    monkeypatch.setattr(checkpoints.tempfile, "mkstemp", mkstemp)


def large_model(monkeypatch) -> None:
    """Saves as for a model over STATE_COPY_MAX_BYTES: torch.save writes to the file on the training thread."""
    monkeypatch.setattr(checkpoint_policy, "STATE_COPY_MAX_BYTES", 0)


def config(make_config, epochs: int = 3, **checkpoint):
    return make_config("iris-linear", epochs=epochs,
                       checkpoint={"every_epochs": 1, "keep_last": 10, "monitor": "val_loss", **checkpoint})


def assert_one_line_failures(events, phrase: str) -> list[CheckpointFailed]:
    failed = events.of(CheckpointFailed)
    assert failed, "each failed save is reported"
    for event in failed:
        assert phrase in event.message and "\n" not in event.message, event.message
    return failed


@pytest.mark.parametrize("code, phrase", [(errno.ENOSPC, "the disk is full"),
                                          (errno.EDQUOT, "the disk quota is used up"),
                                          (errno.EIO, "Input/output error")])
def test_a_large_model_on_a_failing_disk_trains_on_and_lists_what_was_not_saved(make_config, run_trainer,
                                                                                 monkeypatch, code, phrase):
    """torch's zip writer turns the disk's error into a RuntimeError: it is still one line, not the run's end."""
    large_model(monkeypatch)
    failing_disk(monkeypatch, code)
    finished, events, trainer = run_trainer(config(make_config))
    assert finished.state == "finished"
    assert [event.epoch for event in events.of(EpochEnded)] == [1, 2, 3], "training went on"
    failed = assert_one_line_failures(events, phrase)
    assert not events.of(CheckpointSaved)
    run_dir = trainer.run_dir
    assert set(finished.unsaved) == {event.path for event in failed}
    assert str(run_dir / "last.pt") in finished.unsaved and str(run_dir / "epoch-0003.pt") in finished.unsaved
    assert finished.last_unsaved and finished.checkpoint is None
    assert isinstance(events.events[-1], RunFinished)
    assert not list(run_dir.glob(f"{checkpoints.TEMP_PREFIX}*")), "no partial files left behind"


@pytest.mark.parametrize("large", [False, True], ids=["small model: background writes", "large model: inline"])
def test_a_folder_made_read_only_mid_run_ends_saying_last_pt_is_missing(make_config, run_trainer, monkeypatch,
                                                                       large):
    if large:
        large_model(monkeypatch)
    read_only_from(monkeypatch, "epoch-0002.pt")
    finished, events, _ = run_trainer(config(make_config, epochs=4))
    assert [event.epoch for event in events.of(EpochEnded)] == [1, 2, 3, 4]
    saved = {Path(event.path).name for event in events.of(CheckpointSaved)}
    assert "epoch-0001.pt" in saved and "last.pt" not in saved
    assert_one_line_failures(events, "cannot write here: Read-only file system")
    assert finished.last_unsaved
    assert {Path(path).name for path in finished.unsaved} >= {"epoch-0002.pt", "epoch-0003.pt", "epoch-0004.pt",
                                                              "last.pt"}
    assert finished.checkpoint and Path(finished.checkpoint).name != "last.pt"
    assert checkpoints.load_checkpoint(finished.checkpoint), "the last checkpoint really written"
    assert exit_code(finished, None) == EXIT_FAILED


def test_a_small_models_pending_best_written_at_the_end_on_a_full_disk_is_one_line(make_config, run_trainer,
                                                                                   monkeypatch):
    """The best kept in memory is written on the training thread at the end (torch.save into the file)."""
    failing_disk(monkeypatch, after=1)  # the first best lands; every later write fails
    finished, events, _ = run_trainer(config(make_config, epochs=8, every_epochs=0))
    best_failures = [event for event in events.of(CheckpointFailed) if event.reason == "best"]
    assert best_failures and all("the disk is full" in event.message for event in best_failures)
    assert finished.state == "finished" and finished.last_unsaved
    assert {Path(path).name for path in finished.unsaved} == {"best.pt", "last.pt"}


def test_a_later_save_of_the_same_file_takes_it_off_the_list(make_config, run_trainer, monkeypatch):
    failing = {"now": False}
    checkpoint_files(monkeypatch, lambda file, count: FailingFile(file, errno.ENOSPC) if failing["now"] else file)

    def disk_fails_in_epoch_two(event, trainer):
        if isinstance(event, EpochEnded):
            failing["now"] = event.epoch == 2

    large_model(monkeypatch)
    finished, events, trainer = run_trainer(config(make_config, epochs=3, save_best=False),
                                            handler=disk_fails_in_epoch_two)
    assert [Path(event.path).name for event in events.of(CheckpointFailed)] == ["epoch-0002.pt"]
    assert finished.unsaved == [str(trainer.run_dir / "epoch-0002.pt")]
    assert not finished.last_unsaved and exit_code(finished, None) == EXIT_OK


@pytest.mark.parametrize("where", ["serialize", "snapshot"])
def test_no_memory_for_a_checkpoints_copy_is_one_line_and_training_goes_on(make_config, run_trainer, monkeypatch,
                                                                          where):
    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore details")

    monkeypatch.setattr(checkpoints, where, out_of_memory)
    monkeypatch.setattr(checkpoint_policy, "BEST_WRITE_INTERVAL_S", 0.0 if where == "serialize" else 1e9)
    finished, events, _ = run_trainer(config(make_config, epochs=3))
    assert finished.state == "finished" and [event.epoch for event in events.of(EpochEnded)] == [1, 2, 3]
    failed = events.of(CheckpointFailed)
    assert failed and all(event.message == "not saved: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
                          for event in failed)
    assert "last.pt" not in {Path(path).name for path in finished.unsaved}, "last.pt is written on its own"


def test_a_manual_save_on_a_full_disk_is_reported_and_listed(make_config, run_trainer, monkeypatch, tmp_path):
    large_model(monkeypatch)
    failing_disk(monkeypatch, after=0)
    target = tmp_path / "mine.pt"

    def save_once(event, trainer):
        if isinstance(event, EpochEnded) and event.epoch == 1:
            trainer.controls.save(str(target))

    finished, events, _ = run_trainer(config(make_config, epochs=2, every_epochs=0, save_best=False),
                                      handler=save_once)
    manual = [event for event in events.of(CheckpointFailed) if event.reason == "manual"]
    assert len(manual) == 1 and "the disk is full" in manual[0].message
    assert str(target) in finished.unsaved and not target.exists()


# ---------------------------------------------------------------- the faces: headless, the app


def test_headless_on_a_full_disk_prints_one_line_per_failure_and_exits_1(checkpoint_dir, monkeypatch, capsys):
    large_model(monkeypatch)
    failing_disk(monkeypatch)
    out = io.StringIO()
    code = run_headless(LaunchOptions(preset="iris-linear", overrides={
        "epochs": 2, "device": "cpu", "checkpoint.dir": str(checkpoint_dir), "checkpoint.every_epochs": 1}), out=out)
    text = out.getvalue() + capsys.readouterr().err
    assert code == EXIT_FAILED
    assert "Traceback" not in text
    failures = [line for line in text.splitlines() if line.startswith("checkpoint not saved: ")]
    assert len(failures) >= 3 and all("the disk is full" in line for line in failures)
    assert "finished, but last.pt could not be written: after epoch 2 (step" in text
    (run_dir,) = checkpoint_dir.iterdir()
    (note,) = [line for line in text.splitlines() if line.startswith("  not saved: ")]
    for name in ("best.pt", "epoch-0001.pt", "epoch-0002.pt"):
        assert str(run_dir / name) in note
    assert note.endswith(f"{run_dir / 'last.pt'} (the run's end is not on disk)")


def test_the_summary_and_exit_code_follow_last_pt():
    base = dict(epoch=3, step=24, elapsed_s=1.0, best={}, last={}, best_epoch=None, checkpoint=None)
    cases = [
        (RunFinished(state="finished", unsaved=[], **base), EXIT_OK, None),
        (RunFinished(state="finished", unsaved=["ck/run/epoch-0002.pt"], **base), EXIT_OK, "not saved: ck/run/epoch"),
        (RunFinished(state="finished", unsaved=["ck/run/last.pt"], **base), EXIT_FAILED, "could not be written"),
        (RunFinished(state="stopped", message="received SIGTERM", unsaved=["ck/run/last.pt"], **base), EXIT_FAILED,
         "the run's end is not on disk"),
        (RunFinished(state="stopped", message="received SIGTERM", **base), 128 + 15, None),
    ]
    for result, code, phrase in cases:
        assert exit_code(result, None) == code, result
        out = io.StringIO()
        print_summary(result, out)
        if phrase:
            assert phrase in out.getvalue()
        else:
            assert "not saved" not in out.getvalue()


def test_the_app_says_which_checkpoints_were_not_saved():
    from tui_trainer.engine.events import event_from_dict
    from tui_trainer.ui.run_view import RunView

    finished = RunFinished(state="finished", epoch=3, step=24, elapsed_s=1.0, best={}, last={}, best_epoch=None,
                           checkpoint=None, unsaved=["ck/run/best.pt", "ck/run/last.pt"])
    across_a_socket = event_from_dict(finished.to_dict())  # an engine process sends it as JSON
    (line,) = RunView().apply(across_a_socket)
    assert "not saved: ck/run/best.pt, ck/run/last.pt" in line.text and line.level == "error"
    clean = RunFinished(state="finished", epoch=3, step=24, elapsed_s=1.0, best={}, last={}, best_epoch=None,
                        checkpoint="ck/run/last.pt")
    (line,) = RunView().apply(clean)
    assert "not saved" not in line.text and line.level == "good"
