"""What the engine needs of the folder a run writes in. The runs layer decides which folder that is (a new one,
or the run folder of the checkpoint being resumed) and holds it; the engine only writes and prunes inside it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from tui_trainer.config import RunConfig


class HeldFolder(Protocol):
    path: Path

    def write_file(self, name: str, text: str) -> None:
        """Replace the file `name` in the folder atomically."""

    def prune_periodic(self, written: str | Path | None, keep: int) -> list[str]:
        """Note that a periodic checkpoint landed; remove the run's own beyond the newest `keep`."""

    def release(self) -> None:
        """Let go of the folder (and its lock)."""


FolderOpener = Callable[[RunConfig, bool, Path | None, Path | None, str | None], tuple[HeldFolder | None, Path]]
"""(config, is_main, planned run dir, checkpoint resumed, run id) -> (the folder held, or None off the main
process, and its path)."""
