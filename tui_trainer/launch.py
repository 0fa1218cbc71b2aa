"""What the command line (or the app) asks for: what to train (a RunRequest), how to host it (a Hosting), and
what the app does on start-up. The flags stay as the command line spells them; `request` and `hosting()` are
what the rest of the program reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui_trainer.config import ConfigError, RunConfig
from tui_trainer.runs.hosting import Hosting
from tui_trainer.runs.request import RunRequest


@dataclass
class LaunchOptions:
    preset: str | None = None
    """A preset's name or a YAML file's path; None: the default preset (or the resumed checkpoint's config)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Dotted keys to values, from --lr, --epochs ... and --set key=value."""
    override_sources: dict[str, str] = field(default_factory=dict)
    """Dotted key -> the flag that set it, so an error names the flag rather than the preset file."""
    presets_dir: str | None = None
    resume: str | None = None
    """A checkpoint to continue from."""
    start: bool = False
    """The app starts training at once instead of waiting on the setup screen."""
    json: bool = False
    detach: bool = False
    """Train in a background process that outlives the terminal: nobody ends it (see runs.hosting)."""
    start_paused: bool = False
    """A run in another process waits paused before its first step (the app's loads and resumes)."""
    processes: int = 1
    """Detached runs: data-parallel processes under torchrun (more than 1 needs --detach)."""
    attach: str | None = None
    """The app: the run folder of a detached run to attach to, instead of the setup screen."""
    owned: bool = False
    """An engine process the app started for itself: it saves and stops when that app goes away."""
    owner_pid: int | None = None
    """The owning app's process, watched by the engine (the app may die before it connects)."""
    in_thread: bool = False
    """The app trains in a thread of its own process instead of starting an engine process."""
    trust_code: bool = False
    """--trust-code: the resumed checkpoint may import the code its stored config names."""
    trusted_imports: list[str] = field(default_factory=list)
    """Import targets of the resumed checkpoint that the user confirmed in the app (exactly these may run)."""

    @property
    def request(self) -> RunRequest:
        """What to train."""
        return RunRequest(preset=self.preset, presets_dir=self.presets_dir, overrides=dict(self.overrides),
                          override_sources=dict(self.override_sources), resume=self.resume,
                          trust_code=self.trust_code, trusted_imports=tuple(self.trusted_imports))

    def hosting(self, *, headless: bool = False) -> Hosting:
        """How a run started with these options is hosted: detached (--detach, or torchrun's processes), the
        app's own engine process (owned), the foreground of the shell (headless), or the app's thread."""
        if self.detach or self.processes > 1:
            return Hosting.detached(self.processes)
        if self.owned:
            return Hosting.engine_of_app(self.owner_pid)
        if headless:
            return Hosting.shell()
        if self.in_thread:
            return Hosting.in_thread()
        return Hosting.engine_of_app(self.owner_pid or os.getpid())


def resolve_config(options: LaunchOptions | RunRequest) -> tuple[RunConfig, Path | None]:
    """The run's config and where it came from: RunRequest.resolve() of what the options ask to train."""
    request = options.request if isinstance(options, LaunchOptions) else options
    return request.resolve()


__all__ = ["ConfigError", "LaunchOptions", "RunRequest", "resolve_config"]
