"""Shared by the app's reliability tests: counts of what was tried and what held, files that must never
load (one of them runs a command when unpickled), and the real process in a pseudo-terminal."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import pty
import struct
import subprocess
import sys
import termios
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.cli_helpers import cli_env

# ---------------------------------------------------------------- counts


TALLIES: list[Tally] = []
"""Every module's tally; tests/reliability/conftest.py prints them at the end of the session."""


class Tally:
    """What a test module tried against the promises of issue 4, and how often each promise held."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.tried: Counter[tuple[str, str]] = Counter()
        self.held: Counter[tuple[str, str]] = Counter()
        TALLIES.append(self)

    @contextlib.contextmanager
    def attempt(self, promise: str, case: str) -> Iterator[None]:
        """Counts one try of a case against a promise; it held when the block ends without an exception."""
        self.tried[promise, case] += 1
        yield
        self.held[promise, case] += 1

    def summary(self) -> list[str]:
        """One line for the module (each promise: held/tried), then one indented line per case."""
        promises = sorted({promise for promise, _ in self.tried})
        totals = []
        for promise in promises:
            tried = sum(count for (name, _), count in self.tried.items() if name == promise)
            held = sum(count for (name, _), count in self.held.items() if name == promise)
            totals.append(f"{promise}: {held}/{tried} held")
        lines = [f"{self.name}: " + "; ".join(totals)]
        for promise, case in sorted(self.tried):
            lines.append(f"    {promise} / {case}: {self.held[promise, case]}/{self.tried[promise, case]} held")
        return lines


# ---------------------------------------------------------------- files that must never load


class RunsCode:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


BAD_KINDS = {
    "crafted-pickle": "refused: a bare pickle, which could run code when loaded",
    "crafted-torch": "refused: the file holds code that would run when loaded",
    "truncated": "truncated or damaged",
    "empty": "the file is empty",
    "png": "not a checkpoint: the file is not in PyTorch's format",
    "newer": "written by a newer tui-trainer (format 99",
}
"""Each kind of file that cannot be loaded, and the phrase its own message holds."""


def write_bad_checkpoints(folder: Path, good: Path, marker: Path) -> dict[str, Path]:
    """One file of each BAD_KINDS in folder, made from a good checkpoint; the crafted ones touch marker."""
    import torch

    from tui_trainer.engine.checkpoints import FORMAT, load_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    files = {kind: folder / f"{kind}.pt" for kind in BAD_KINDS}
    with files["crafted-pickle"].open("wb") as file:
        pickle.dump({"format": FORMAT, "format_version": 1, "model": RunsCode(marker)}, file)
    payload = load_checkpoint(good)
    torch.save({**payload, "model": RunsCode(marker)}, files["crafted-torch"])
    data = good.read_bytes()
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["empty"].write_bytes(b"")
    files["png"].write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200))
    torch.save({**payload, "format_version": 99}, files["newer"])
    return files


def crafted_files_are_live(files: dict[str, Path], marker: Path) -> None:
    """The crafted files really run their command under a plain unpickle (the marker is removed again)."""
    import torch

    with files["crafted-pickle"].open("rb") as file:
        pickle.load(file)
    assert marker.exists()
    marker.unlink()
    torch.load(files["crafted-torch"], weights_only=False)
    assert marker.exists()
    marker.unlink()


def good_checkpoint(folder: Path) -> Path:
    """A real checkpoint of a one-epoch iris-linear run under folder; returns its last.pt."""
    from tui_trainer import presets
    from tui_trainer.engine.trainer import Trainer

    config = presets.load_config("iris-linear", {"device": "cpu", "checkpoint.dir": str(folder), "epochs": 1,
                                                 "checkpoint.every_epochs": 0, "checkpoint.save_best": False})
    trainer = Trainer(config)
    trainer.run()
    return Path(trainer.run_dir) / "last.pt"


def file_digest(path: Path) -> bytes:
    import hashlib

    return hashlib.sha256(path.read_bytes()).digest()


# ---------------------------------------------------------------- the real process in a pseudo-terminal


ENTER_ALT_SCREEN = b"\x1b[?1049h"
LEAVE_ALT_SCREEN = b"\x1b[?1049l"


def _take_terminal() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """`python -m tui_trainer ARGS` (or `python -c SCRIPT ARGS`) in a pseudo-terminal of 100x30; everything it
    writes is kept."""

    def __init__(self, args: list[str], cwd: Path, size: tuple[int, int] = (100, 30),
                 script: str | None = None) -> None:
        self.master, slave = pty.openpty()
        columns, rows = size
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        env = cli_env(cwd)
        env.pop("NO_COLOR", None)
        env["TERM"] = "xterm-256color"
        command = [sys.executable, "-c", script, *args] if script else [sys.executable, "-m", "tui_trainer", *args]
        self.process = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env,
                                        start_new_session=True, preexec_fn=_take_terminal)
        os.close(slave)
        self._output = bytearray()
        self._lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True, name="pty-reader")
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self._output += data

    @property
    def output(self) -> bytes:
        with self._lock:
            return bytes(self._output)

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def wait_for_output(self, text: bytes, since: int = 0, timeout: float = 60) -> int:
        """Wait until text appears in the output after offset since; returns where it ends."""
        deadline = time.monotonic() + timeout
        while True:
            output = self.output
            found = output.find(text, since)
            if found >= 0:
                return found + len(text)
            assert self.process.poll() is None, f"the app ended ({self.process.returncode}) before showing {text!r}"
            assert time.monotonic() < deadline, f"{text!r} never appeared on screen"
            time.sleep(0.02)

    def finish(self, timeout: float = 60) -> tuple[int, bytes]:
        """Wait for the process to end and for the reader to take the last of its output."""
        code = self.process.wait(timeout=timeout)
        self.reader.join(timeout=10)
        return code, self.output

    def hang_up(self) -> None:
        """Close the terminal's side, as when an SSH connection drops: the kernel sends SIGHUP."""
        os.close(self.master)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        with contextlib.suppress(OSError):
            os.close(self.master)
        self.reader.join(timeout=10)


def wait_until(condition: Callable[[], object], what: str, timeout: float = 60, every: float = 0.05,
               process: subprocess.Popen | None = None):
    """Poll condition until it returns something true (returned); fails after timeout or when process ends."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if process is not None:
            assert process.poll() is None, f"the process ended ({process.returncode}) while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(every)


def training_run_dir(folder: Path) -> Path | None:
    """The run folder under folder once its metrics hold a progress record, else None."""
    for metrics in folder.glob("*/metrics.jsonl"):
        with contextlib.suppress(OSError):
            if '"progress"' in metrics.read_text():
                return metrics.parent
    return None


def restored_terminal(output: bytes) -> bool:
    """The output left the alternate screen after it last entered it, and showed the cursor again."""
    entered, left = output.rfind(ENTER_ALT_SCREEN), output.rfind(LEAVE_ALT_SCREEN)
    return entered >= 0 and left > entered and b"\x1b[?25h" in output[left:]
