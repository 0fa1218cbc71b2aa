"""What the command line asks for, shared by the headless runner and the app.

Building the RunConfig from these options happens here too, so both faces read presets, overrides and
resumed checkpoints the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui_trainer import presets
from tui_trainer.config import ConfigError, RunConfig, apply_overrides, config_from_dict, require_trusted


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
    """Train in a background process that outlives the terminal (see tui_trainer.detached)."""
    start_paused: bool = False
    """A detached run waits paused before its first step (the app's loads and resumes)."""
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


def resolve_config(options: LaunchOptions) -> tuple[RunConfig, Path | None]:
    """The run's config and where it came from (the preset file; None for a resumed checkpoint).

    Resuming takes the checkpoint's own config, with the command line's overrides on top. A checkpoint is data:
    code its config names is imported only when the user trusts it (UntrustedCode otherwise).
    Raises ConfigError (or CheckpointError) with a one-line message.
    """
    if options.resume:
        from tui_trainer.engine.checkpoints import load_checkpoint

        raw, path = load_checkpoint(options.resume, mmap=True)["config"], None
        source = str(options.resume)
    else:
        path, raw = presets.load(options.preset or presets.DEFAULT_PRESET, options.presets_dir)
        source = str(path)
    try:
        raw = apply_overrides(raw, options.overrides, source=source) if options.overrides else raw
        config = config_from_dict(raw, source=source)
    except ConfigError as error:
        raise _blame_flag(error, options) from None
    if options.resume:
        require_trusted(config, source, options.trust_code, options.trusted_imports, set(options.overrides))
    return config, path


def _blame_flag(error: ConfigError, options: LaunchOptions) -> ConfigError:
    """An error in a field that a flag set names that flag, not the preset file."""
    for key, flag in options.override_sources.items():
        if error.path == key or error.path.startswith(key + "."):
            return ConfigError(flag, error.path, error.message)
    return error


__all__ = ["ConfigError", "LaunchOptions", "resolve_config"]
