"""Checkpoints: atomic saves, loads that never run code, a clear message for every kind of bad file,
listing without the weights, and the run folder's last.pt, best.pt and pruned periodic saves."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from tui_trainer.engine import checkpoints
from tui_trainer.engine.checkpoints import (
    FORMAT,
    FORMAT_VERSION,
    TEMP_PREFIX,
    CheckpointError,
    clean_temporary_files,
    list_checkpoints,
    load_checkpoint,
    read_info,
    save_checkpoint,
)
from tui_trainer.engine.events import CheckpointSaved, EpochEnded, StateChanged
from tui_trainer.engine.trainer import Trainer


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short run of iris-linear: its run folder (last.pt, best.pt, epoch-*.pt) and its events."""
    from tui_trainer import presets

    folder = tmp_path_factory.mktemp("trained")
    config = presets.load_config("iris-linear", {"device": "cpu", "checkpoint.dir": str(folder), "epochs": 3})
    events = []
    trainer = Trainer(config, events.append)
    trainer.run()
    return trainer.run_dir, events


@pytest.fixture
def payload(trained):
    return load_checkpoint(trained[0] / "last.pt")


def temp_files(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.name.startswith(TEMP_PREFIX)]


# ---------------------------------------------------------------- what a checkpoint holds


def test_a_checkpoint_describes_itself(payload):
    assert payload["format"] == FORMAT and payload["format_version"] == FORMAT_VERSION
    meta = payload["meta"]
    assert meta["preset"] == "iris-linear" and meta["task"] == "classification"
    assert meta["epoch"] == 3 and meta["step"] == 24 and meta["epoch_complete"] is True and meta["reason"] == "last"
    assert set(meta["val"]) == {"val_loss", "val_accuracy"}
    assert set(meta["versions"]) == {"tui_trainer", "torch", "python"}
    assert payload["config"]["name"] == "iris-linear"
    assert set(payload["model"]) == {"1.weight", "1.bias"}
    assert payload["optimizer"]["state"] and payload["optimizer"]["param_groups"][0]["momentum"] == 0.9
    assert payload["trainer"]["step"] == 24 and payload["trainer"]["epoch"] == 4 and payload["trainer"]["position"] == 0
    assert isinstance(payload["rng"]["torch"], torch.Tensor)
    kinds = {record["type"] for record in json.loads(payload["history_json"])}
    assert kinds == {"progress", "epoch_ended"}


def test_round_trip_keeps_every_tensor(tmp_path, payload):
    path = tmp_path / "copy.pt"
    size = save_checkpoint(path, payload)
    assert size == path.stat().st_size > 0
    again = load_checkpoint(path)
    for name, tensor in payload["model"].items():
        assert torch.equal(again["model"][name], tensor)
    assert again["meta"] == payload["meta"] and again["config"] == payload["config"]
    assert temp_files(tmp_path) == []


def test_a_snapshot_keeps_the_values_of_its_moment_and_saves_like_the_original(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3)).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(2, 1, 5, 5)).sum().backward()
    optimizer.step()
    payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "meta": {"epoch": 3}}
    before = {name: tensor.clone() for name, tensor in payload["model"].items()}

    snapshot = checkpoints.snapshot(payload)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    optimizer.step()

    for name, tensor in snapshot["model"].items():
        assert torch.equal(tensor, before[name])
    assert snapshot["model"]["0.weight"].is_contiguous(memory_format=torch.channels_last)
    assert snapshot["model"]._metadata == payload["model"]._metadata  # what load_state_dict reads versions from
    assert snapshot["optimizer"]["state"][0]["step"] == 1
    save_checkpoint(tmp_path / "best.pt", snapshot)
    loaded = torch.load(tmp_path / "best.pt", weights_only=True)
    fresh = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3))
    fresh.load_state_dict(loaded["model"])
    assert torch.equal(fresh[0].weight, before["0.weight"])
    assert loaded["meta"] == {"epoch": 3}


@pytest.mark.parametrize("older_format", [False, True], ids=["current", "tuple-of-ints (older checkpoints)"])
def test_random_generators_resume_where_they_were_saved(tmp_path, older_format):
    import random

    torch.manual_seed(7)
    random.seed(7)
    state = checkpoints.capture_rng()
    if older_format:
        version, internal, gauss = random.getstate()
        state["python"] = (version, list(internal), gauss)
    path = tmp_path / "rng.pt"
    save_checkpoint(path, {"rng": state})
    expected = ([random.random() for _ in range(3)], torch.rand(3))
    random.seed(0)
    torch.manual_seed(0)
    checkpoints.restore_rng(torch.load(path, weights_only=True)["rng"])
    assert [random.random() for _ in range(3)] == expected[0]
    assert torch.equal(torch.rand(3), expected[1])


# ---------------------------------------------------------------- atomic saves


class Interrupted(BaseException):
    """Stands for the process dying in the middle of a write."""


def test_a_save_that_dies_midway_leaves_the_old_file(tmp_path, payload, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, payload)
    before = path.read_bytes()
    real_save = torch.save

    def dies_midway(obj, file, *args, **kwargs):
        buffer = io.BytesIO()
        real_save(obj, buffer)
        file.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        file.flush()
        raise Interrupted

    monkeypatch.setattr(torch, "save", dies_midway)
    changed = {**payload, "meta": {**payload["meta"], "step": 999}}
    with pytest.raises(Interrupted):
        save_checkpoint(path, changed)
    assert path.read_bytes() == before
    assert load_checkpoint(path)["meta"]["step"] == 24
    assert temp_files(tmp_path) == [], "the half-written temporary file is removed"
    assert [info.path for info in list_checkpoints(tmp_path)] == [str(path)]


@pytest.mark.parametrize("serialized", [False, True], ids=["payload", "bytes"])
def test_a_large_save_goes_to_the_disk_while_it_is_written(tmp_path, payload, monkeypatch, serialized):
    """The fsync at the end of a save then waits for the last few MB: each WRITE_BEHIND_BYTES is sent on
    as soon as it is written, in order, with nothing skipped, also from within one large tensor."""
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(checkpoints, "_start_writeback", lambda fd, offset, length: sent.append((offset, length)))
    monkeypatch.setattr(checkpoints, "STARTS_WRITEBACK", True)
    large = {**payload, "model": {"weight": torch.randn(5_000_000)}}  # 20 MB in one tensor
    path = tmp_path / "last.pt"
    save_checkpoint(path, checkpoints.serialize(large) if serialized else large)
    size = path.stat().st_size
    assert sent, "nothing was sent to the disk before the fsync"
    assert [offset for offset, _ in sent] == [0, *(offset + length for offset, length in sent[:-1])]
    assert all(length >= checkpoints.WRITE_BEHIND_BYTES for _, length in sent)
    assert size - (sent[-1][0] + sent[-1][1]) < checkpoints.WRITE_BEHIND_BYTES, "only the tail is left to fsync"
    assert torch.equal(load_checkpoint(path)["model"]["weight"], large["model"]["weight"])


def test_a_full_disk_is_a_clear_error_and_the_old_file_stays(tmp_path, payload, monkeypatch):
    path = tmp_path / "best.pt"
    save_checkpoint(path, payload)
    before = path.read_bytes()
    real_fsync = os.fsync

    def no_space(descriptor):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(CheckpointError) as caught:
        save_checkpoint(path, payload)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert str(caught.value) == f"{path}: not saved: the disk is full; the previous checkpoint is untouched"
    assert path.read_bytes() == before and temp_files(tmp_path) == []


def test_a_folder_that_cannot_be_written(tmp_path, payload, monkeypatch):
    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(checkpoints.tempfile, "mkstemp", read_only)
    with pytest.raises(CheckpointError) as caught:
        save_checkpoint(tmp_path / "last.pt", payload)
    assert str(caught.value) == f"{tmp_path / 'last.pt'}: cannot write here: Permission denied"


def test_a_failing_rename_keeps_the_old_file(tmp_path, payload, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, payload)
    before = path.read_bytes()

    def cannot_rename(source, target):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(checkpoints.os, "replace", cannot_rename)
    with pytest.raises(CheckpointError, match="not saved: Input/output error"):
        save_checkpoint(path, payload)
    assert path.read_bytes() == before and temp_files(tmp_path) == []


def test_leftover_temporary_files_are_never_listed_and_cleaned_when_old(tmp_path, payload):
    save_checkpoint(tmp_path / "run" / "last.pt", payload)
    stale = tmp_path / "run" / f"{TEMP_PREFIX}last.pt.abc123"
    fresh = tmp_path / "run" / f"{TEMP_PREFIX}best.pt.def456"
    dotted = tmp_path / "run" / f"{TEMP_PREFIX}epoch.pt"
    for leftover in (stale, fresh, dotted):
        leftover.write_bytes(b"PK\x03\x04 half a file")
    old = os.stat(stale).st_mtime - 3600
    os.utime(stale, (old, old))
    os.utime(dotted, (old, old))
    assert [Path(info.path).name for info in list_checkpoints(tmp_path)] == ["last.pt"]
    assert clean_temporary_files(tmp_path) == 0, "only the folder itself is cleaned, nothing below it"
    assert clean_temporary_files(tmp_path / "run") == 1
    assert not stale.exists() and fresh.exists(), "a save in progress is left alone"
    assert dotted.exists(), "not the temporary file of a save of one of the run's own checkpoints"


def test_a_new_run_in_the_folder_cleans_old_leftovers(make_config, run_trainer):
    config = make_config("iris-linear", epochs=1)
    _, _, trainer = run_trainer(config)
    leftover = trainer.run_dir / f"{TEMP_PREFIX}last.pt.zzz"
    leftover.write_bytes(b"half")
    old = os.stat(leftover).st_mtime - 3600
    os.utime(leftover, (old, old))
    run_trainer(config, resume_from=trainer.run_dir / "last.pt")
    assert not leftover.exists()


# ---------------------------------------------------------------- bad files, each with its own message


class RunsCode:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def bad_files(folder: Path, payload: dict) -> dict[str, Path]:
    folder.mkdir(exist_ok=True)
    good = folder / "good.pt"
    save_checkpoint(good, payload)
    data = good.read_bytes()
    files = {
        "empty": folder / "empty.pt",
        "truncated": folder / "truncated.pt",
        "png": folder / "picture.pt",
        "text": folder / "notes.pt",
        "foreign-zip": folder / "archive.pt",
        "plain-tensor": folder / "tensor.pt",
        "foreign-dict": folder / "other-program.pt",
        "pickle-code": folder / "crafted-pickle.pt",
        "torch-code": folder / "crafted-torch.pt",
        "newer": folder / "newer.pt",
        "folder": folder / "folder.pt",
    }
    files["empty"].write_bytes(b"")
    files["truncated"].write_bytes(data[: len(data) * 2 // 3])
    files["png"].write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64))
    files["text"].write_text("epoch,loss\n1,0.5\n", encoding="utf-8")
    with zipfile.ZipFile(files["foreign-zip"], "w") as archive:
        archive.writestr("readme.txt", "hello")
    torch.save(torch.zeros(3), files["plain-tensor"])
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 3}, files["foreign-dict"])
    with files["pickle-code"].open("wb") as file:
        pickle.dump({"format": FORMAT, "model": RunsCode(folder / "pwned-pickle")}, file)
    torch.save({"format": FORMAT, "format_version": 1, "model": RunsCode(folder / "pwned-torch")},
               files["torch-code"])
    torch.save({**payload, "format_version": FORMAT_VERSION + 1}, files["newer"])
    files["folder"].mkdir()
    return files


EXPECTED = {
    "missing": "no such file",
    "empty": "the file is empty",
    "truncated": "truncated or damaged",
    "png": "not a checkpoint: the file is not in PyTorch's format",
    "text": "not a checkpoint: the file is not in PyTorch's format",
    "foreign-zip": "not a checkpoint: a zip file, but not one PyTorch wrote",
    "plain-tensor": "not a tui-trainer checkpoint",
    "foreign-dict": "not a tui-trainer checkpoint",
    "pickle-code": "refused: a bare pickle, which could run code when loaded",
    "torch-code": "refused: the file holds code that would run when loaded",
    "newer": f"written by a newer tui-trainer (format {FORMAT_VERSION + 1}; this one reads up to {FORMAT_VERSION})",
    "folder": "is a folder",
}


@pytest.fixture
def bad(tmp_path, payload):
    files = bad_files(tmp_path / "bad", payload)
    files["missing"] = tmp_path / "bad" / "missing.pt"
    return files


def test_each_bad_file_gets_its_own_one_line_message(bad, tmp_path):
    messages = {}
    for kind, path in bad.items():
        with pytest.raises(CheckpointError) as caught:
            load_checkpoint(path)
        text = str(caught.value)
        assert len(text.splitlines()) == 1 and text.startswith(f"{path}: "), text
        assert EXPECTED[kind] in caught.value.message, (kind, text)
        messages[kind] = caught.value.message
    distinct = {"missing", "empty", "truncated", "png", "foreign-zip", "plain-tensor", "pickle-code", "torch-code",
                "newer", "folder"}
    assert len({messages[kind] for kind in distinct}) == len(distinct)
    assert not (tmp_path / "bad" / "pwned-pickle").exists()
    assert not (tmp_path / "bad" / "pwned-torch").exists()


def test_the_crafted_files_really_would_run_code(bad, tmp_path):
    """The two crafted files are live: a plain unpickle runs their command (in this test only)."""
    with bad["pickle-code"].open("rb") as file:
        pickle.load(file)
    assert (tmp_path / "bad" / "pwned-pickle").exists()
    torch.load(bad["torch-code"], weights_only=False)
    assert (tmp_path / "bad" / "pwned-torch").exists()


def test_listing_shows_bad_files_with_their_errors(bad, tmp_path):
    infos = {Path(info.path).name: info for info in list_checkpoints(tmp_path / "bad")}
    assert infos["good.pt"].error is None and infos["good.pt"].step == 24
    for kind in ("empty", "truncated", "png", "plain-tensor", "pickle-code", "torch-code", "newer"):
        assert EXPECTED[kind] in infos[bad[kind].name].error, kind
    assert not (tmp_path / "bad" / "pwned-pickle").exists() and not (tmp_path / "bad" / "pwned-torch").exists()


def test_resuming_from_a_crafted_file_is_refused_before_training(bad, make_config, recorder, tmp_path):
    for kind in ("pickle-code", "torch-code", "truncated", "newer"):
        with pytest.raises(CheckpointError, match=r"refused|truncated|newer"):
            Trainer(make_config("iris-linear"), recorder, resume_from=bad[kind]).run()
    assert not (tmp_path / "bad" / "pwned-pickle").exists() and not (tmp_path / "bad" / "pwned-torch").exists()
    assert "running" not in recorder.states()


def test_a_checkpoint_of_another_model_does_not_fit(trained, make_config, recorder):
    config = make_config("iris-linear", model={"name": "mlp", "options": {"hidden": [4]}})
    with pytest.raises(CheckpointError, match="does not fit this run's model or optimizer"):
        Trainer(config, recorder, resume_from=trained[0] / "last.pt").run()


def test_missing_keys_are_damage(tmp_path, payload):
    broken = {key: value for key, value in payload.items() if key != "trainer"}
    torch.save(broken, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="damaged: missing trainer"):
        load_checkpoint(tmp_path / "partial.pt")


# ---------------------------------------------------------------- listing


def test_listing_is_newest_first_with_metadata(tmp_path, payload):
    for index, name in enumerate(["a/epoch-0001.pt", "b/last.pt", "top.pt", "a/best.pt"]):
        save_checkpoint(tmp_path / name, {**payload, "meta": {**payload["meta"], "saved_at": 1000.0 + index,
                                                              "run_id": Path(name).parent.name}})
    infos = list_checkpoints(tmp_path)
    assert [Path(info.path).relative_to(tmp_path).as_posix() for info in infos] == [
        "a/best.pt", "top.pt", "b/last.pt", "a/epoch-0001.pt"]
    info = infos[0]
    assert info.run_id == "a" and info.preset == "iris-linear" and info.epoch == 3 and info.step == 24
    assert info.val_accuracy == payload["meta"]["val"]["val_accuracy"] and info.val_loss is not None
    assert info.val_r2 is None and info.reason == "last" and info.error is None
    assert info.size_bytes == (tmp_path / "a" / "best.pt").stat().st_size
    assert list_checkpoints(tmp_path / "no-such-folder") == []
    assert [Path(info.path).name for info in list_checkpoints(tmp_path / "a")] == ["best.pt", "epoch-0001.pt"]


def test_listing_does_not_read_the_weights(tmp_path, payload, monkeypatch):
    save_checkpoint(tmp_path / "last.pt", payload)
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    info = read_info(tmp_path / "last.pt")
    assert info.step == 24
    assert calls and all(call.get("mmap") is True and call.get("weights_only") is True for call in calls)


def test_read_info_of_a_missing_file():
    info = read_info("/no/such/dir/last.pt")
    assert info.error == "no such file" and info.size_bytes == 0


# ---------------------------------------------------------------- the run folder: last, best, keep_last


def test_keep_last_prunes_periodic_checkpoints(make_config, run_trainer):
    config = make_config("iris-linear", epochs=5, checkpoint={"every_epochs": 1, "keep_last": 2})
    _, events, trainer = run_trainer(config)
    names = sorted(path.name for path in trainer.run_dir.glob("*.pt"))
    assert names == ["best.pt", "epoch-0004.pt", "epoch-0005.pt", "last.pt"]
    saved = [event for event in events.of(CheckpointSaved) if event.reason == "epoch"]
    assert [Path(event.path).name for event in saved] == [f"epoch-000{index}.pt" for index in range(1, 6)]
    assert load_checkpoint(trainer.run_dir / "epoch-0004.pt")["meta"]["epoch"] == 4


def test_every_epochs_and_no_best(make_config, run_trainer):
    config = make_config("iris-linear", epochs=4, checkpoint={"every_epochs": 2, "keep_last": 5, "save_best": False})
    _, _, trainer = run_trainer(config)
    assert sorted(path.name for path in trainer.run_dir.glob("*.pt")) == ["epoch-0002.pt", "epoch-0004.pt", "last.pt"]
    config = make_config("iris-linear", epochs=2, checkpoint={"every_epochs": 0})
    _, _, trainer = run_trainer(config)
    assert sorted(path.name for path in trainer.run_dir.glob("*.pt")) == ["best.pt", "last.pt"]


@pytest.mark.parametrize(("preset", "monitor", "best_of"), [
    ("digits-mlp", "val_accuracy", max),
    ("digits-mlp", "val_loss", min),
    ("sine-regression", "val_r2", max),
    ("sine-regression", "val_mae", min),
])
def test_best_follows_the_monitored_metric(preset, monitor, best_of, make_config, run_trainer):
    config = make_config(preset, epochs=4, checkpoint={"monitor": monitor})
    finished, events, trainer = run_trainer(config)
    epochs = events.of(EpochEnded)
    values = [epoch.val[monitor] for epoch in epochs]
    best_value = best_of(values)
    best_epoch = values.index(best_value) + 1
    best = load_checkpoint(trainer.run_dir / "best.pt")
    assert best["meta"]["val"][monitor] == best_value
    assert best["meta"]["epoch"] == best_epoch and finished.best_epoch == best_epoch
    assert finished.best[monitor] == best_value
    flagged = [epoch.epoch for epoch in epochs if epoch.is_best]
    assert flagged[0] == 1 and flagged[-1] == best_epoch
    # The first best is written at once; later ones within BEST_WRITE_INTERVAL_S wait in memory, and the
    # newest is written by the end: never more writes than new bests, and the last one always lands.
    best_saves = [event for event in events.of(CheckpointSaved) if event.reason == "best"]
    assert 1 <= len(best_saves) <= len(flagged)
    assert best_saves[-1].step == best["meta"]["step"]


def test_a_pending_best_is_written_at_a_pause_and_is_the_best_epochs_own_state(make_config, tmp_path):
    """A best kept in memory is written when the run pauses, and holds the weights of its own epoch, not of
    the steps trained after it."""
    from tui_trainer.engine.controls import Controls

    config = make_config("iris-linear", epochs=30, checkpoint={"every_epochs": 0, "monitor": "val_loss"})
    controls = Controls()
    seen: list = []

    def on_event(event):
        seen.append(event)
        if isinstance(event, EpochEnded) and event.epoch == 20:
            controls.pause()
        if isinstance(event, StateChanged) and event.state == "paused":
            controls.stop(save=True, reason="test")

    trainer = Trainer(config, on_event, controls=controls)
    trainer.run()
    epochs = [event for event in seen if isinstance(event, EpochEnded)]
    best_epoch = max(event.epoch for event in epochs if event.is_best and event.epoch <= 20)
    saves = [event for event in seen if isinstance(event, CheckpointSaved) and event.reason == "best"]
    paused_at = next(index for index, event in enumerate(seen)
                     if isinstance(event, StateChanged) and event.state == "paused")
    assert seen.index(saves[-1]) < paused_at, "the best kept in memory is written before the run says paused"
    best = load_checkpoint(trainer.run_dir / "best.pt")
    assert best["meta"]["epoch"] == best_epoch
    last = load_checkpoint(trainer.run_dir / "last.pt")
    if best["meta"]["step"] != last["meta"]["step"]:
        assert not all(torch.equal(best["model"][key], last["model"][key]) for key in best["model"])


def test_a_slow_disk_does_not_hold_training_back_and_the_late_file_holds_its_own_epoch(make_config, run_trainer,
                                                                                      monkeypatch):
    """A periodic checkpoint of a small model is written beside the training: the next epoch trains while
    the disk holds its write. It lands with the weights of its own epoch, is reported when it lands, and
    the run ends only once it is on disk."""
    import threading

    real_save = checkpoints.save_checkpoint
    disk_is_back = threading.Event()

    def slow_disk(path, payload):
        if Path(path).name == "epoch-0001.pt":
            assert disk_is_back.wait(30), "training waited for the disk"
        return real_save(path, payload)

    monkeypatch.setattr(checkpoints, "save_checkpoint", slow_disk)
    weights_after_epoch_1 = {}

    def handler(event, trainer):
        if isinstance(event, EpochEnded) and event.epoch == 1:
            weights_after_epoch_1.update({key: value.clone() for key, value in trainer.model.state_dict().items()})
        if isinstance(event, EpochEnded) and event.epoch == 2:
            disk_is_back.set()

    config = make_config("iris-linear", epochs=4, checkpoint={"every_epochs": 1, "keep_last": 4, "save_best": False})
    finished, events, trainer = run_trainer(config, handler=handler)
    assert finished.state == "finished" and disk_is_back.is_set()
    first = next(event for event in events.of(CheckpointSaved) if event.path.endswith("epoch-0001.pt"))
    assert events.events.index(first) > events.events.index(events.of(EpochEnded)[1]), "reported when it landed"
    assert first.step == 8
    saved = load_checkpoint(first.path)
    assert saved["meta"]["step"] == 8
    assert all(torch.equal(saved["model"][key], value) for key, value in weights_after_epoch_1.items())
    assert sorted(path.name for path in trainer.run_dir.glob("epoch-*.pt")) == [
        "epoch-0001.pt", "epoch-0002.pt", "epoch-0003.pt", "epoch-0004.pt"]
    assert not [thread for thread in threading.enumerate() if thread.name == "checkpoint-writer"]
