"""A checkpoint is data from a file: its structure is checked against a schema before any of it is used.

A valid zip and pickle holding the wrong types, a file that is not a regular one, one the user cannot read,
and an archive that would unpack to far more than it holds: each is one line naming the file and what is
wrong, a listing shows it as a row with that reason (the other files list as usual), and a resume refuses
it before training.
"""

from __future__ import annotations

import copy
import io
import os
import socket
import subprocess
import sys
import tempfile
import threading
import zipfile
from pathlib import Path

import pytest
import torch

from tui_trainer.engine import checkpoints
from tui_trainer.engine.checkpoints import CheckpointError, list_checkpoints, load_checkpoint, save_checkpoint
from tui_trainer.engine.trainer import Trainer


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """last.pt of a short iris-linear run with SGD momentum and a cosine schedule."""
    from tui_trainer import presets

    folder = tmp_path_factory.mktemp("payload")
    config = presets.load_config("iris-linear", {"device": "cpu", "checkpoint.dir": str(folder), "epochs": 2,
                                                 "scheduler.name": "cosine"})
    trainer = Trainer(config)
    trainer.run()
    return trainer.run_dir / "last.pt"


@pytest.fixture(scope="module")
def good(trained) -> dict:
    return load_checkpoint(trained)


def changed(payload: dict, where: tuple, value) -> dict:
    """A copy of payload with payload[where[0]][where[1]]... set to value (tensors are shared, not copied)."""
    top = copy.copy(payload)
    node = top
    for key in where[:-1]:
        node[key] = copy.copy(node[key])
        node = node[key]
    node[where[-1]] = value
    return top


def assert_one_line(error: CheckpointError, path: Path, phrase: str) -> None:
    text = str(error)
    assert text.startswith(f"{path}: ") and len(text.splitlines()) == 1, text
    assert phrase in error.message, (phrase, error.message)


# ---------------------------------------------------------------- what a listing reads

WRONG_METADATA = {
    "meta-a-list": (("meta",), [1, 2], "meta: input should be a valid dictionary (found list)"),
    "val-a-string": (("meta", "val"), "0.5", "meta.val: input should be a valid dictionary (found str)"),
    "val-loss-a-string": (("meta", "val", "val_loss"), "low", "meta.val.val_loss: input should be a valid number"),
    "saved-at-a-string": (("meta", "saved_at"), "yesterday", "meta.saved_at: input should be a valid number"),
    "saved-at-infinite": (("meta", "saved_at"), float("inf"), "meta.saved_at"),
    "saved-at-far-future": (("meta", "saved_at"), 1e300, "meta.saved_at: input should be less than or equal"),
    "epoch-a-string": (("meta", "epoch"), "3", "meta.epoch: input should be a valid integer (found str)"),
    "epoch-a-flag": (("meta", "epoch"), True, "meta.epoch: input should be a valid integer (found True)"),
    "step-negative": (("meta", "step"), -1, "meta.step: input should be greater than or equal to 0"),
    "run-id-a-number": (("meta", "run_id"), 7, "meta.run_id: input should be a valid string (found 7)"),
    "preset-huge": (("meta", "preset"), "p" * 100_000, "meta.preset: string should have at most 4096"),
    "model-a-number": (("model",), 5, "model: input should be a valid dictionary (found 5)"),
    "weight-a-string": (("model", "1.weight"), "weights", "model.1.weight: should be a tensor (found str)"),
    "config-a-list": (("config",), ["not", "a", "dict"], "config: input should be a valid dictionary (found list)"),
    "config-none": (("config",), None, "config: input should be a valid dictionary (found None)"),
    "trainer-text": (("trainer",), "nope", "trainer: input should be a valid dictionary (found str)"),
    "version-a-string": (("format_version",), "1", "format_version should be a number (found str)"),
}


@pytest.fixture(scope="module")
def wrong_metadata(tmp_path_factory, good) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("wrong-metadata")
    files = {}
    for name, (where, value, _) in WRONG_METADATA.items():
        files[name] = folder / f"{name}.pt"
        torch.save(changed(good, where, value), files[name])
    save_checkpoint(folder / "good.pt", good)
    return files


@pytest.mark.parametrize("kind", WRONG_METADATA)
def test_wrong_types_in_a_valid_file_are_one_line_naming_the_field(wrong_metadata, kind):
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(wrong_metadata[kind])
    assert_one_line(caught.value, wrong_metadata[kind], "damaged: " + WRONG_METADATA[kind][2].split(" (")[0])


def test_one_bad_file_does_not_spoil_the_listing(wrong_metadata):
    folder = next(iter(wrong_metadata.values())).parent
    infos = {Path(info.path).stem: info for info in list_checkpoints(folder)}
    assert set(infos) == {*WRONG_METADATA, "good"}
    assert infos["good"].error is None and infos["good"].step == 16 and infos["good"].epoch == 2
    assert isinstance(infos["good"].val_loss, float) and isinstance(infos["good"].saved_at, float)
    for kind, (_, _, phrase) in WRONG_METADATA.items():
        assert phrase.split(" (")[0] in infos[kind].error, kind
        assert infos[kind].run_id == folder.name and infos[kind].saved_at > 0, "listed by its folder and time"


def test_the_checkpoints_command_lists_every_row_without_a_traceback(wrong_metadata, capsys):
    from tui_trainer.listing import print_checkpoints

    folder = next(iter(wrong_metadata.values())).parent
    assert print_checkpoints(str(folder), as_json=True) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) == len(WRONG_METADATA) + 1 and "Traceback" not in out


# ---------------------------------------------------------------- what a resume uses

WRONG_STATE = {
    "trainer-empty": (("trainer",), {}, "damaged: trainer.epoch is missing"),
    "trainer-epoch-text": (("trainer", "epoch"), "2", "damaged: trainer.epoch: input should be a valid integer"),
    "trainer-best-text": (("trainer", "best_value"), "good", "damaged: trainer.best_value"),
    "trainer-totals-short": (("trainer", "epoch_totals"), [0.0], "damaged: trainer.epoch_totals"),
    "order-state-short": (("trainer", "epoch_order_state"), torch.zeros(10, dtype=torch.uint8),
                          "damaged: trainer.epoch_order_state: is not a random-number generator's state"),
    "rng-short": (("rng", "torch"), torch.zeros(7, dtype=torch.uint8),
                  "damaged: rng.torch: is not a random-number generator's state"),
    "rng-floats": (("rng", "torch"), torch.zeros(5056), "damaged: rng.torch: should be a 1-D uint8 tensor"),
    "rng-missing": (("rng",), {}, "damaged: rng.torch is missing"),
    "python-rng-short": (("rng", "python"), (3, torch.zeros(10, dtype=torch.int64), None),
                         "damaged: rng.python: should hold 625 int64 words"),
    "python-rng-version": (("rng", "python"), (99, [0] * 624 + [624], None),
                           "damaged: rng.python: is not Python's random state"),
    "history-not-json": (("history_json",), "{not json", "damaged: history_json is not JSON"),
    "history-not-records": (("history_json",), "[1, 2]", "damaged: history_json.0"),
    "history-step-text": (("history_json",), '[{"type": "progress", "step": "x", "train_loss": 1.0}]',
                          "damaged: history_json.0.progress.step"),
    "optimizer-a-number": (("optimizer",), 5, "damaged: optimizer: input should be a valid dictionary"),
    "optimizer-no-groups": (("optimizer", "param_groups"), [], "damaged: optimizer.param_groups"),
    "optimizer-state-shape": (("optimizer", "state"), {0: {"momentum_buffer": torch.zeros(7, 7)}},
                              "optimizer.state.0.momentum_buffer is 7x7 in the file; its parameter is 3x4 here"),
    "optimizer-state-text": (("optimizer", "state"), {0: {"momentum_buffer": "fast"}},
                             "optimizer.state.0.momentum_buffer is text, not a tensor or a number"),
    "optimizer-state-stray": (("optimizer", "state"), {7: {"momentum_buffer": torch.zeros(3, 4)}},
                              "optimizer.state holds parameter 7, which none of its groups names"),
    "optimizer-lr-text": (("optimizer", "param_groups", 0, "lr"), "fast",
                          "optimizer.param_groups.0.lr is text in the file, a number here"),
    "optimizer-group-size": (("optimizer", "param_groups", 0, "params"), [0],
                             "the optimizer's group 0 has 1 parameters in the file, 2 here"),
    "weight-shape": (("model", "1.weight"), torch.zeros(5, 5), "1.weight is 5x5 in the file, 3x4 here"),
    "weights-missing": (("model",), {}, "the model's weights: 2 missing (1.weight, 1.bias)"),
    "weights-extra": (("model", "extra.weight"), torch.zeros(1), "1 not in this model (extra.weight)"),
    "scheduler-lrs": (("scheduler", "base_lrs"), [0.1, 0.2], "scheduler.base_lrs holds 2 values in the file, 1 here"),
    "scheduler-epoch-text": (("scheduler", "last_epoch"), "x", "scheduler.last_epoch is text in the file"),
}


@pytest.mark.parametrize("kind", WRONG_STATE)
def test_a_resume_checks_everything_it_uses_before_training(kind, good, trained, tmp_path, recorder):
    where, value, phrase = WRONG_STATE[kind]
    path = tmp_path / f"{kind}.pt"
    torch.save(changed(good, where, value), path)
    config = checkpoints_config(good, tmp_path)
    with pytest.raises(CheckpointError) as caught:
        Trainer(config, recorder, resume_from=path).run()
    assert_one_line(caught.value, path, phrase)
    assert "running" not in recorder.states()


def checkpoints_config(payload: dict, folder: Path):
    from tui_trainer.config import config_from_dict

    return config_from_dict({**payload["config"], "checkpoint": {**payload["config"]["checkpoint"],
                                                                 "dir": str(folder / "runs")}})


def test_the_good_file_still_resumes(good, trained, tmp_path, recorder):
    path = tmp_path / "copy.pt"
    save_checkpoint(path, good)
    finished = Trainer(checkpoints_config(good, tmp_path), recorder, resume_from=path).run()
    assert finished.state == "finished" and finished.step == good["trainer"]["step"]


def test_how_the_file_ran_its_optimizer_is_not_imposed_on_this_machine(good, trained, tmp_path, recorder):
    """A checkpoint written where the fused kernels were missing (fused None) resumes, with this machine's own
    implementation; so does one that asked for foreach."""
    fresh = Trainer(checkpoints_config(good, tmp_path), run_id="fresh")
    fresh.setup()
    own = {key: fresh.optimizer.param_groups[0].get(key) for key in ("fused", "foreach")}
    other = changed(changed(good, ("optimizer", "param_groups", 0, "fused"), None),
                    ("optimizer", "param_groups", 0, "foreach"), not own["foreach"])
    path = tmp_path / "elsewhere.pt"
    save_checkpoint(path, other)
    trainer = Trainer(checkpoints_config(good, tmp_path), recorder, resume_from=path)
    assert trainer.run().state == "finished"
    assert {key: trainer.optimizer.param_groups[0].get(key) for key in ("fused", "foreach")} == own


# ---------------------------------------------------------------- files that are not regular or not readable


def special_files(folder: Path, good_file: Path) -> dict[str, Path]:
    folder.mkdir(exist_ok=True)
    files = {name: folder / f"{name}.pt" for name in ("fifo", "zero", "null", "socket", "dangling", "loop")}
    os.mkfifo(files["fifo"])
    files["zero"].symlink_to("/dev/zero")
    files["null"].symlink_to("/dev/null")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(files["socket"]))
    server.close()
    files["dangling"].symlink_to(folder / "gone.pt")
    files["loop"].symlink_to(files["loop"])
    (folder / "link-to-good.pt").symlink_to(good_file)
    return files


SPECIAL = {
    "fifo": "refused: a named pipe (FIFO), not a regular file",
    "zero": "refused: a device, not a regular file",
    "null": "refused: a device, not a regular file",
    "socket": "refused: a socket, not a regular file",
    "dangling": "no such file",
    "loop": "cannot read: Too many levels of symbolic links",
}


def listed_within(folder: Path, seconds: float = 30.0) -> dict:
    """list_checkpoints(folder), failing (not hanging) if it blocks on a file."""
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(infos=list_checkpoints(folder)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert "infos" in result, "the listing blocked on a file"
    return {Path(info.path).stem: info for info in result["infos"]}


def test_pipes_devices_sockets_and_broken_links_are_rows_with_their_reason(tmp_path, trained):
    files = special_files(tmp_path / "odd", trained)
    infos = listed_within(tmp_path / "odd")
    assert infos["link-to-good"].error is None and infos["link-to-good"].step == 16, "a link to a checkpoint lists"
    for kind, phrase in SPECIAL.items():
        assert infos[kind].error == phrase, (kind, infos[kind].error)
        with pytest.raises(CheckpointError) as caught:
            load_checkpoint(files[kind])
        assert_one_line(caught.value, files[kind], phrase)


UNREADABLE_LISTING = """
import json, os, sys
from tui_trainer.engine import checkpoints
import torch, pydantic  # imported while they can still be read: the listing runs as another user
os.setgid(65534)
os.setuid(65534)
infos = checkpoints.list_checkpoints(sys.argv[1])
print(json.dumps({os.path.basename(info.path): info.error for info in infos}))
"""


@pytest.mark.slow
def test_files_the_user_cannot_read_are_rows_not_a_traceback(trained):
    """As root, chmod 000 stops nothing: the listing then runs in a child that drops to nobody (65534)."""
    folder = Path(tempfile.mkdtemp(prefix="unreadable-"))
    try:
        os.chmod(folder, 0o755)
        secret = folder / "secret.pt"
        secret.write_bytes(trained.read_bytes())
        os.chmod(secret, 0o000)
        (folder / "link-to-secret.pt").symlink_to(secret)
        elsewhere = Path(tempfile.mkdtemp(prefix="private-"))  # 0700: nobody cannot look inside
        (elsewhere / "hidden.pt").write_bytes(b"x")
        (folder / "link-into-private.pt").symlink_to(elsewhere / "hidden.pt")
        if os.geteuid() == 0:
            import json

            done = subprocess.run([sys.executable, "-c", UNREADABLE_LISTING, str(folder)], capture_output=True,
                                  text=True, timeout=120, cwd=str(Path(checkpoints.__file__).parents[2]))
            assert done.returncode == 0, done.stderr
            errors = json.loads(done.stdout)
        else:
            errors = {Path(info.path).name: info.error for info in list_checkpoints(folder)}
        assert errors == {"secret.pt": "cannot read: Permission denied",
                          "link-to-secret.pt": "cannot read: Permission denied",
                          "link-into-private.pt": "cannot read: Permission denied"}
    finally:
        import shutil

        shutil.rmtree(elsewhere, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------- archives that unpack to more than they hold


def rezipped(source: Path, target: Path, change) -> Path:
    """target: source's entries written again, each through change(info, data) -> (info, data)."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy_:
        for info in original.infolist():
            new_info, data = change(copy.copy(info), original.read(info))
            copy_.writestr(new_info, data)
    return target


def deflate_bomb(source: Path, target: Path, padding: int) -> Path:
    def change(info, data):
        if info.filename.endswith("data.pkl"):
            info.compress_type = zipfile.ZIP_DEFLATED
            return info, data + bytes(padding)  # what follows the pickle's STOP is read into memory all the same
        return info, data

    return rezipped(source, target, change)


def compressed_tensor(source: Path, target: Path) -> Path:
    def change(info, data):
        if "/data/" in info.filename:
            info.compress_type = zipfile.ZIP_LZMA
        return info, data

    return rezipped(source, target, change)


def claims_more_than_it_holds(source: Path, target: Path) -> Path:
    """One entry's sizes in the zip directory say 2 GB."""
    data = bytearray(source.read_bytes())
    directory = data.rfind(b"PK\x01\x02", 0, data.rfind(b"/data/0"))
    data[directory + 20:directory + 28] = (2**31 - 1).to_bytes(4, "little") * 2
    target.write_bytes(bytes(data))
    return target


def test_archives_that_would_unpack_to_more_than_they_hold_are_refused_before_torch_reads_them(
        tmp_path, trained, monkeypatch):
    bombs = {
        "deflated metadata": (deflate_bomb(trained, tmp_path / "bomb.pt", 32 << 20),
                              "data.pkl is compressed (to unpack to 32.0 MB)"),
        "compressed tensor": (compressed_tensor(trained, tmp_path / "lzma.pt"), "/data/0 is compressed"),
        "sizes that lie": (claims_more_than_it_holds(trained, tmp_path / "lies.pt"),
                           "refused: its entries claim more bytes than the file holds"),
    }
    assert bombs["deflated metadata"][0].stat().st_size < 200_000, "a small file that would unpack to 32 MB"
    loads = []
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: loads.append(args))
    for name, (path, phrase) in bombs.items():
        with pytest.raises(CheckpointError) as caught:
            load_checkpoint(path)
        assert_one_line(caught.value, path, phrase)
        assert phrase in checkpoints.read_info(path).error, name
    assert loads == [], "torch never saw them"


def test_metadata_larger_than_the_bound_is_refused_and_large_tensors_still_list(tmp_path, good, monkeypatch):
    monkeypatch.setattr(checkpoints, "MAX_PICKLE_BYTES", 64 << 10)
    wordy = changed(good, ("meta", "reason"), "r" * 4000)
    wordy = changed(wordy, ("history_json",), "[" + ",".join(['{"type": "epoch_ended", "step": 1}'] * 4000) + "]")
    save_checkpoint(tmp_path / "wordy.pt", wordy)
    big = changed(good, ("model", "extra"), torch.zeros(2 << 20))  # 8 MB of tensor, far over the bound
    save_checkpoint(tmp_path / "big.pt", big)
    infos = {Path(info.path).stem: info for info in list_checkpoints(tmp_path)}
    assert infos["wordy"].error.startswith("refused: its data.pkl holds 0.1 MB, more than the 0.1 MB")
    assert infos["big"].error is None and infos["big"].size_bytes > 8 << 20
    assert torch.equal(load_checkpoint(tmp_path / "big.pt")["model"]["extra"], big["model"]["extra"])


def test_a_payload_that_is_not_a_checkpoint_at_all(tmp_path):
    cases = {
        "a-list": ([1, 2, 3], "not a tui-trainer checkpoint"),
        "format-a-tensor": ({"format": torch.tensor(1)}, "not a tui-trainer checkpoint"),
        "version-a-flag": ({"format": checkpoints.FORMAT, "format_version": True},
                           "format_version should be a number (found bool)"),
    }
    for name, (payload, phrase) in cases.items():
        path = tmp_path / f"{name}.pt"
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        path.write_bytes(buffer.getvalue())
        with pytest.raises(CheckpointError) as caught:
            load_checkpoint(path)
        assert_one_line(caught.value, path, phrase)
