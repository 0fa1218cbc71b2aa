"""A process killed at random moments while it writes checkpoints never leaves a broken one behind."""

import os
import random
import signal
import time

import pytest
import torch

from tui_trainer.engine import checkpoints
from tui_trainer.engine.checkpoints import FORMAT, FORMAT_VERSION, list_checkpoints, load_checkpoint, save_checkpoint

KILLS = 50


# Built once before any fork: a forked child must not start torch's thread pool (it would hang in it).
BULK = torch.randn(1024, 1024)


def _payload(counter: int) -> dict:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "meta": {"run_id": "run", "preset": "p", "epoch": counter, "step": counter, "val": {}, "saved_at": time.time()},
        "config": {},
        "trainer": {"step": counter},
        # Big enough (about 4 MB) that a kill often lands in the middle of a write.
        "model": {"bulk": BULK, "counter": torch.tensor([counter])},
    }


def _write_forever(target) -> None:
    counter = 0
    while True:
        counter += 1
        save_checkpoint(target, _payload(counter))


@pytest.mark.slow
def test_sigkill_during_saves_never_breaks_the_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    target = run_dir / "last.pt"
    save_checkpoint(target, _payload(0))
    rng = random.Random(1234)
    held, previous_counter, kills_mid_write = 0, 0, 0
    for _ in range(KILLS):
        pid = os.fork()
        if pid == 0:  # the child writes until it is killed; fork keeps torch imported, so each round is quick
            try:
                _write_forever(target)
            finally:
                os._exit(1)
        time.sleep(rng.uniform(0.005, 0.25))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)

        leftovers = list(run_dir.glob(f"{checkpoints.TEMP_PREFIX}*"))
        kills_mid_write += bool(leftovers)
        payload = load_checkpoint(target)
        counter = payload["trainer"]["step"]
        assert payload["model"]["counter"].item() == counter
        assert torch.equal(payload["model"]["bulk"], BULK)
        assert counter >= previous_counter or counter >= 1
        listed = list_checkpoints(tmp_path)
        assert [info.path for info in listed] == [str(target)], "a partial file is never listed"
        assert listed[0].error is None
        previous_counter = counter
        held += 1
        assert checkpoints.clean_temporary_files(run_dir, older_than_s=0) == len(leftovers)
        assert not list(run_dir.glob(f"{checkpoints.TEMP_PREFIX}*"))
    assert held == KILLS
    # The kills must really have hit writes in progress, or the test proves nothing.
    assert kills_mid_write >= KILLS // 5, kills_mid_write
    print(f"{KILLS} kills, {kills_mid_write} mid-write, {held} times the previous checkpoint loaded")


def test_trainer_cleans_temporary_files_of_a_killed_save(tmp_path):
    from tui_trainer.config import config_from_dict
    from tui_trainer.engine.trainer import Trainer

    run_dir = tmp_path / "ck" / "run-a"
    config = config_from_dict({"task": "classification", "data": {"source": "iris"}, "model": {"name": "linear"},
                               "loss": {"name": "cross_entropy"}, "epochs": 1,
                               "checkpoint": {"dir": str(tmp_path / "ck")}})
    Trainer(config, run_id="run-a").run()
    stale = run_dir / f"{checkpoints.TEMP_PREFIX}last.pt.abc"
    stale.write_bytes(b"PK\x03\x04 half a checkpoint")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    resumed = Trainer(config, resume_from=run_dir / "last.pt")  # the run's own last.pt: it goes on in its folder
    resumed.run()
    assert resumed.run_dir == run_dir and not stale.exists()
    assert (run_dir / "last.pt").is_file()
