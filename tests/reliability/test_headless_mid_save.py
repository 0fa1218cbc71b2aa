"""A headless run signalled in the middle of writing a checkpoint: the checkpoint being written is
finished, last.pt is written after it, both load, and the process exits 128 + N without a traceback.
(SIGINT and SIGHUP take the same handler; tests/test_headless.py sends all three during training.)"""

from __future__ import annotations

import os
import signal
import threading

import pytest

from tests.cli_helpers import start_cli
from tests.reliability.app_helpers import Tally, wait_until
from tui_trainer.engine.checkpoints import TEMP_PREFIX, load_checkpoint

pytestmark = pytest.mark.slow

TALLY = Tally("test_headless_mid_save")

WIDE = ["--set", "model.options.hidden=[2048, 2048]", "--set", "checkpoint.every_epochs=1"]
"""A wide model: each epoch's checkpoints take long enough (about 0.2 s each) to signal in the middle."""


@pytest.mark.parametrize("signum", [signal.SIGTERM], ids=lambda signum: signal.Signals(signum).name)
def test_a_signal_in_the_middle_of_a_save(tmp_path, signum):
    folder = tmp_path / "ck"
    process = start_cli(["--headless", "--preset", "digits-mlp", "--epochs", "100000", "--checkpoint-dir",
                         str(folder), *WIDE], tmp_path)
    output = {"stdout": "", "stderr": ""}

    def read(name: str, stream) -> None:
        output[name] = stream.read()

    readers = [threading.Thread(target=read, args=(name, getattr(process, name)), daemon=True)
               for name in ("stdout", "stderr")]
    for reader in readers:
        reader.start()

    def save_in_progress() -> str | None:
        for run_dir in folder.glob("*"):
            for name in os.listdir(run_dir):
                if name.startswith(TEMP_PREFIX) and not name.startswith(f"{TEMP_PREFIX}last.pt"):
                    return str(run_dir / name)
        return None

    with TALLY.attempt("4 signals", f"headless, {signal.Signals(signum).name} during a save"):
        try:
            temporary = wait_until(save_in_progress, "a checkpoint being written", timeout=300, every=0.002,
                                   process=process)
            process.send_signal(signum)
            code = process.wait(timeout=300)
        finally:
            process.kill()
            process.wait()
            for reader in readers:
                reader.join(timeout=30)
        stdout, stderr = output["stdout"], output["stderr"]
        assert code == 128 + signum, (code, stdout, stderr)
        assert "Traceback" not in stdout + stderr
        run_dir = os.path.dirname(temporary)
        name = os.path.basename(temporary).removeprefix(TEMP_PREFIX).rsplit(".", 1)[0]
        written = load_checkpoint(os.path.join(run_dir, name))
        last = load_checkpoint(os.path.join(run_dir, "last.pt"))
        assert 0 < written["meta"]["step"] <= last["meta"]["step"]
        assert not [entry for entry in os.listdir(run_dir) if entry.startswith(TEMP_PREFIX)]
        assert f"saved {os.path.join(run_dir, name)}" in stdout and "stopped:" in stdout
