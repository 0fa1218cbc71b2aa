"""A run writes, cleans and prunes only files it created, in a folder it created (issue 20, findings 1, 2, 4-6).

Attacks and slips tried: resuming a checkpoint kept in a folder of the user's own; names planted where the
next run folder or branch goes (links to a victim's folder, dangling links, folders, files); a preset name
that is a path or too long; two resumes of one checkpoint at once; a killed save's leftovers in the folder a
branch leaves behind.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import stat
import time
from pathlib import Path

import pytest

from tui_trainer.engine import checkpoints
from tui_trainer.engine.metrics import read_metrics
from tui_trainer.engine.trainer import Trainer
from tui_trainer.runs.folder import (
    NAME_MAX,
    RECORD_FILE,
    RUN_ID_MAX,
    RunFolderError,
    adopt_run_folder,
    claim_run_folder,
    is_run_folder,
    safe_run_id,
)

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
OLD = time.time() - 3600


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 3-epoch iris run with epoch-0001..3.pt, last.pt, best.pt; tests copy it before changing it."""
    from tui_trainer import presets

    root = tmp_path_factory.mktemp("trained")
    config = presets.load_config("iris-linear", {"device": "cpu", "epochs": 3, "checkpoint.dir": str(root),
                                                 "checkpoint.every_epochs": 1, "checkpoint.keep_last": 5})
    trainer = Trainer(config)
    trainer.run()
    return trainer.run_dir


@pytest.fixture
def run_copy(trained, checkpoint_dir):
    """A run folder of this user's in checkpoint_dir, as the trained run left it."""
    target = checkpoint_dir / trained.name
    shutil.copytree(trained, target)
    return target


def snapshot(folder: Path) -> dict[str, tuple[int, bytes | str]]:
    """Every entry below folder (links not followed): its mode and its bytes (a link: its target)."""
    entries = {".": (os.lstat(folder).st_mode, b"")}
    for path in sorted(folder.rglob("*")):
        status = os.lstat(path)
        if stat.S_ISLNK(status.st_mode):
            content: bytes | str = os.readlink(path)
        elif stat.S_ISREG(status.st_mode):
            content = path.read_bytes()
        else:
            content = b""
        entries[str(path.relative_to(folder))] = (status.st_mode, content)
    return entries


def old_file(path: Path, data: bytes = b"PK\x03\x04 half a file") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (OLD, OLD))
    return path


def victim_folder(tmp_path: Path) -> Path:
    """A folder of the user's with files a run would overwrite, clean up or prune if it wrote there."""
    victim = tmp_path / "victim"
    victim.mkdir()
    os.chmod(victim, 0o700)  # private, as a run folder is: only the record file tells them apart
    for name in ("last.pt", "best.pt", "epoch-0001.pt", "epoch-0002.pt", "epoch-0003.pt", "metrics.jsonl"):
        (victim / name).write_bytes(b"the user's own " + name.encode())
    old_file(victim / f"{checkpoints.TEMP_PREFIX}last.pt.abcdefgh")
    old_file(victim / "deep" / f"{checkpoints.TEMP_PREFIX}notes.txt")
    return victim


# ---------------------------------------------------------------- finding 1: a checkpoint in the user's folder


@pytest.mark.parametrize("name", ["model.pt", "last.pt", "epoch-0001.pt"])
def test_resuming_a_checkpoint_in_a_users_own_folder_leaves_that_folder_alone(trained, checkpoint_dir, tmp_path,
                                                                               make_config, name):
    project = victim_folder(tmp_path)
    checkpoint = project / name
    shutil.copyfile(trained / "last.pt", checkpoint)
    (project / "metrics.jsonl").write_text('{"type": "progress", "step": 1}\n')
    before = snapshot(project)
    config = make_config("iris-linear", epochs=5, checkpoint={"every_epochs": 1, "keep_last": 1})
    trainer = Trainer(config, resume_from=checkpoint)
    assert trainer.run().state == "finished"
    assert trainer.run_dir.parent == checkpoint_dir, "a new run folder under the checkpoint folder"
    assert snapshot(project) == before, "nothing in the user's folder was written, cleaned, chmodded or pruned"
    assert (trainer.run_dir / "last.pt").is_file()


def test_pruning_removes_only_the_periodic_checkpoints_the_run_wrote(run_copy, make_config):
    mine = run_copy / "epoch-0000.pt"
    mine.write_bytes(b"a checkpoint the user put here")  # sorts before every file the run writes
    config = make_config("iris-linear", epochs=5, checkpoint={"every_epochs": 1, "keep_last": 2})
    trainer = Trainer(config, resume_from=run_copy / "last.pt")
    trainer.run()
    assert trainer.run_dir == run_copy, "the run's own last.pt goes on in its folder"
    assert sorted(path.name for path in run_copy.glob("epoch-*.pt")) == [
        "epoch-0000.pt", "epoch-0004.pt", "epoch-0005.pt"]
    assert mine.read_bytes() == b"a checkpoint the user put here"


def test_pruning_never_follows_a_name_out_of_the_folder(run_copy, tmp_path):
    """The record lists names; a name that is not one of the run's periodic files is never removed."""
    from tui_trainer.runs.folder import _lock_existing

    outside = tmp_path / "outside.pt"
    outside.write_bytes(b"keep")
    folder = _lock_existing(run_copy)
    assert folder is not None
    folder._write_record(["../outside.pt", str(outside), "last.pt", "epoch-0001.pt", "epoch-0002.pt"])
    removed = folder.prune_periodic(None, keep=1)
    folder.release()
    assert removed == ["epoch-0001.pt"]
    assert outside.read_bytes() == b"keep"
    assert (run_copy / "last.pt").is_file() and (run_copy / "epoch-0002.pt").is_file()


# ---------------------------------------------------------------- finding 2: planted entries


def plant(kind: str, path: Path, victim: Path) -> None:
    if kind == "link to a folder":
        path.symlink_to(victim, target_is_directory=True)
    elif kind == "dangling link":
        path.symlink_to(victim / "not-there")
    elif kind == "folder":
        path.mkdir()
        (path / "metrics.jsonl").write_text("")
    elif kind == "file":
        path.write_text("not a folder")
    elif kind == "link to a file":
        path.symlink_to(victim / "last.pt")


PLANTED = ["link to a folder", "dangling link", "folder", "file", "link to a file"]


@pytest.mark.parametrize("kind", PLANTED)
def test_a_planted_entry_where_the_run_folder_goes_moves_the_run_to_the_next_name(checkpoint_dir, tmp_path,
                                                                                 make_config, kind):
    victim = victim_folder(tmp_path)
    plant(kind, checkpoint_dir / "run-a", victim)
    before = snapshot(victim)
    trainer = Trainer(make_config("iris-linear", epochs=1), run_id="run-a")
    assert trainer.run().state == "finished"
    assert trainer.run_dir == checkpoint_dir / "run-a-2"
    assert stat.S_IMODE(os.lstat(trainer.run_dir).st_mode) == 0o700
    assert snapshot(victim) == before


@pytest.mark.parametrize("kind", PLANTED)
def test_a_planted_branch_name_is_skipped_not_followed(run_copy, tmp_path, make_config, kind):
    victim = victim_folder(tmp_path)
    step = checkpoints.read_info(run_copy / "epoch-0001.pt").step
    plant(kind, run_copy.parent / f"{run_copy.name}-from-s{step}", victim)
    before = snapshot(victim)
    trainer = Trainer(make_config("iris-linear", epochs=3), resume_from=run_copy / "epoch-0001.pt")
    assert trainer.run().state == "finished"
    assert trainer.run_dir == run_copy.parent / f"{run_copy.name}-from-s{step}-2"
    assert snapshot(victim) == before


def test_a_checkpoint_reached_through_a_link_to_a_users_folder_resumes_into_a_new_folder(run_copy, tmp_path,
                                                                                        make_config):
    victim = victim_folder(tmp_path)
    link = run_copy.parent / "alias"
    link.symlink_to(victim, target_is_directory=True)
    shutil.copyfile(run_copy / "last.pt", victim / "copied.pt")
    before = snapshot(victim)
    trainer = Trainer(make_config("iris-linear", epochs=4), resume_from=link / "copied.pt")
    trainer.run()
    assert trainer.run_dir.parent == run_copy.parent and trainer.run_dir.name != "alias"
    assert snapshot(victim) == before


def test_a_link_inside_a_run_folder_makes_a_resume_branch(run_copy, tmp_path, make_config):
    victim = victim_folder(tmp_path)
    (run_copy / "metrics.jsonl").unlink()
    (run_copy / "metrics.jsonl").symlink_to(victim / "metrics.jsonl")
    before = snapshot(victim)
    trainer = Trainer(make_config("iris-linear", epochs=4), resume_from=run_copy / "last.pt")
    trainer.run()
    assert trainer.run_dir != run_copy and trainer.run_dir.parent == run_copy.parent
    assert snapshot(victim) == before


@pytest.mark.parametrize("names", [("metrics.jsonl",), ("config.yaml", ".config.yaml.tmp"),
                                   ("metrics.jsonl", "config.yaml", ".config.yaml.tmp")])
def test_the_run_never_writes_through_a_link_inside_its_folder(tmp_path, make_config, names):
    from tui_trainer.engine.events import Warning as RunWarning

    target = tmp_path / "target"
    target.write_text("keep")
    config = make_config("iris-linear", epochs=1)
    events = []
    with claim_run_folder(config) as folder:
        for name in names:
            (folder.path / name).symlink_to(target)
        assert Trainer(config, events.append, run_dir=folder.path).run().state == "finished"
    assert target.read_text() == "keep"
    if "config.yaml" in names:
        assert not (folder.path / "config.yaml").is_symlink() and "iris" in (folder.path / "config.yaml").read_text()
    if "metrics.jsonl" in names:
        assert any("metrics.jsonl is no longer written" in event.message for event in events
                   if isinstance(event, RunWarning))


def test_a_folder_of_someone_else_or_writable_by_others_is_not_a_run_folder(run_copy):
    assert is_run_folder(run_copy)
    os.chmod(run_copy, 0o770)
    assert not is_run_folder(run_copy), "group-writable: another user could have planted its files"
    os.chmod(run_copy, 0o700)
    (run_copy / RECORD_FILE).unlink()
    (run_copy / RECORD_FILE).symlink_to(run_copy / "last.pt")
    assert not is_run_folder(run_copy)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a folder another user's needs root")
def test_another_users_run_folder_is_not_continued_in(run_copy, make_config):
    os.chown(run_copy, 65534, 65534)
    os.chown(run_copy / RECORD_FILE, 65534, 65534)
    assert not is_run_folder(run_copy)
    trainer = Trainer(make_config("iris-linear", epochs=4), resume_from=run_copy / "last.pt")
    trainer.run()
    assert trainer.run_dir.parent == run_copy.parent and trainer.run_dir != run_copy


def test_a_trainer_given_a_folder_it_did_not_make_refuses_it(tmp_path, make_config):
    foreign = tmp_path / "plain-folder"
    foreign.mkdir()
    (foreign / "last.pt").write_bytes(b"mine")
    with pytest.raises(RunFolderError, match="not a run folder of yours"):
        Trainer(make_config("iris-linear", epochs=1), run_dir=foreign).run()
    assert (foreign / "last.pt").read_bytes() == b"mine"
    assert sorted(os.listdir(foreign)) == ["last.pt"]


def test_a_checkpoint_folder_that_is_a_file_is_a_one_line_error(tmp_path, make_config):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    config = make_config("iris-linear", epochs=1, checkpoint={"dir": str(blocker)})
    with pytest.raises(RunFolderError) as caught:
        claim_run_folder(config)
    assert "checkpoint.dir" in str(caught.value) and "\n" not in str(caught.value)


# ---------------------------------------------------------------- finding 5: run ids


HOSTILE_NAMES = ["../../escaped", "/tmp/x", "x[/]y", "a/../../b", "..", ".hidden", "-rf", "é\x1b[31m\n", "",
                 "x" * 200, "." * 300, "a" * 250 + "/" + "b" * 250]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
def test_a_preset_name_makes_one_safe_folder_inside_the_checkpoint_folder(checkpoint_dir, make_config, name):
    config = make_config("iris-linear").model_copy(update={"name": name})
    with claim_run_folder(config) as folder:
        assert folder.path.parent == checkpoint_dir
        assert SAFE_NAME.fullmatch(folder.path.name) and len(folder.path.name) <= RUN_ID_MAX
    assert sorted(os.listdir(checkpoint_dir)) == [], "a folder nothing ran in is removed again"


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
def test_an_explicit_run_id_is_made_safe_too(checkpoint_dir, make_config, name):
    with claim_run_folder(make_config("iris-linear"), run_id=name) as folder:
        assert folder.path.parent == checkpoint_dir and SAFE_NAME.fullmatch(folder.path.name)


def test_the_longest_run_id_still_branches_within_name_max(run_copy, make_config):
    long_id = safe_run_id("x" * 1000)
    assert len(long_id) == RUN_ID_MAX
    long_run = run_copy.rename(run_copy.parent / long_id)
    (long_run / "metrics.jsonl").write_text('{"type": "progress", "step": 99999999999999999999}\n')
    for expected in ("", "-2", "-3"):
        folder = claim_run_folder(make_config("iris-linear"), long_run / "last.pt")
        assert folder.path.parent == long_run.parent and len(folder.path.name) <= NAME_MAX
        assert folder.path.name.endswith(f"-from-s{checkpoints.read_info(long_run / 'last.pt').step}{expected}")
        (folder.path / "metrics.jsonl").write_text("")  # keeps the folder, so the next one takes the next name
        folder.release()


# ---------------------------------------------------------------- finding 4: two resumes at once


def test_a_second_resume_of_a_checkpoint_in_use_branches(run_copy, make_config):
    config = make_config("iris-linear", epochs=5)
    held = claim_run_folder(config, run_copy / "last.pt")
    assert held.path == run_copy, "the first continues in the run's folder"
    try:
        second = Trainer(config, resume_from=run_copy / "last.pt")
        second.run()
        assert second.run_dir != run_copy and second.run_dir.name.startswith(run_copy.name + "-from-s")
    finally:
        held.release()
    third = claim_run_folder(config, run_copy / "last.pt")
    assert third.path == run_copy, "once the first has let go, the folder is free again"
    third.release()


def test_a_folder_locked_by_another_process_is_not_trained_into(run_copy, make_config):
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # another process holds the run's lock, as a live run does
        try:
            descriptor = os.open(run_copy / RECORD_FILE, os.O_RDWR)
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            os.write(write_end, b"x")
            time.sleep(30)
        finally:
            os._exit(0)
    try:
        assert os.read(read_end, 1) == b"x"
        config = make_config("iris-linear", epochs=5)
        with claim_run_folder(config, run_copy / "last.pt") as folder:
            assert folder.path != run_copy
        with pytest.raises(RunFolderError, match="in use by another run"):
            adopt_run_folder(run_copy)
    finally:
        os.kill(child, 9)
        os.waitpid(child, 0)


def test_racing_resumes_never_share_a_folder(run_copy, make_config):
    """Processes resuming the same last.pt at the same moment: exactly one goes on in the run's folder."""
    config = make_config("iris-linear", epochs=5)
    checkpoints.read_info(run_copy / "last.pt")  # warm the import in the parent, forks share it
    results, children = [], []
    go_read, go_write = os.pipe()
    for _ in range(4):
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:
            try:
                os.read(go_read, 1)
                folder = claim_run_folder(config, run_copy / "last.pt")
                (folder.path / "metrics.jsonl").touch()
                os.write(write_end, str(folder.path).encode())
                time.sleep(30)
            finally:
                os._exit(0)
        children.append((child, read_end))
    os.write(go_write, b"xxxx")
    try:
        for _child, read_end in children:
            results.append(os.read(read_end, 4096).decode())
    finally:
        for child, _ in children:
            os.kill(child, 9)
            os.waitpid(child, 0)
    assert len(set(results)) == 4, results
    assert results.count(str(run_copy)) == 1, results


# ---------------------------------------------------------------- finding 6: leftovers where a branch leaves


def test_a_branch_cleans_the_run_folder_it_leaves_of_its_own_leftovers_only(run_copy, make_config):
    own = old_file(run_copy / f"{checkpoints.TEMP_PREFIX}epoch-0002.pt.k3j4h5g6")
    fresh = run_copy / f"{checkpoints.TEMP_PREFIX}last.pt.inflight"
    fresh.write_bytes(b"a save in progress")
    others = [old_file(run_copy / f"{checkpoints.TEMP_PREFIX}notes.txt.abcdefgh"),
              old_file(run_copy / f"{checkpoints.TEMP_PREFIX}last.pt"),
              old_file(run_copy / "sub" / f"{checkpoints.TEMP_PREFIX}last.pt.abcdefgh")]
    trainer = Trainer(make_config("iris-linear", epochs=3), resume_from=run_copy / "epoch-0001.pt")
    trainer.run()
    assert trainer.run_dir != run_copy
    assert not own.exists(), "the run's own leftover goes, in the folder the branch came from too"
    assert fresh.exists() and all(path.exists() for path in others)


def test_leftovers_of_a_run_with_a_live_engine_are_left_to_it(run_copy, make_config):
    own = old_file(run_copy / f"{checkpoints.TEMP_PREFIX}last.pt.k3j4h5g6")
    held = claim_run_folder(make_config("iris-linear"), run_copy / "last.pt")
    try:
        claim_run_folder(make_config("iris-linear"), run_copy / "epoch-0001.pt").release()
    finally:
        held.release()
    assert own.exists(), "a folder another run trains in is that run's to clean"


def test_a_branch_starts_its_metrics_with_the_history_it_continues(run_copy, make_config):
    trainer = Trainer(make_config("iris-linear", epochs=3), resume_from=run_copy / "epoch-0001.pt")
    trainer.run()
    steps = [record["step"] for record in read_metrics(trainer.run_dir / "metrics.jsonl")
             if record["type"] == "progress"]
    assert steps == sorted(steps)


@pytest.mark.slow
def test_a_detached_run_holds_its_folder_for_its_whole_life(checkpoint_dir, make_config, monkeypatch, tmp_path):
    """The launcher hands the lock to the run's supervisor: once the launcher has let go, the folder is still
    held, and a resume of the run's checkpoint branches off; once the run has stopped it is free."""
    from tui_trainer.detached.client import RunClient
    from tui_trainer.detached.commands import stop_run
    from tui_trainer.detached.launcher import launch_detached
    from tui_trainer.engine.controls import Save
    from tui_trainer.engine.events import CheckpointSaved
    from tui_trainer.launch import LaunchOptions

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    info = launch_detached(LaunchOptions(preset="iris-linear", overrides={
        "epochs": 100000, "checkpoint.dir": str(checkpoint_dir), "device": "cpu"}), timeout_s=120)
    run_dir = Path(info.run_dir)
    try:
        client = RunClient(info)
        client.send(Save())
        saved = next(event for event in client.events() if isinstance(event, CheckpointSaved))
        client.close()
        with pytest.raises(RunFolderError, match="in use by another run"):
            adopt_run_folder(run_dir)
        config = make_config("iris-linear")
        with claim_run_folder(config, saved.path) as branch:
            assert branch.path != run_dir
    finally:
        assert stop_run(str(checkpoint_dir), run_dir.name) == 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            adopt_run_folder(run_dir).release()
            break
        except RunFolderError:
            time.sleep(0.1)
    else:
        raise AssertionError("the folder stayed locked after its run stopped")
