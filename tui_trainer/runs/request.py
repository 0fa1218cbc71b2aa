"""What to train, as one value: a preset with overrides, or a checkpoint to resume with overrides on top, and
whether that checkpoint's stored code may run. `RunRequest.resolve()` is the one way it becomes a RunConfig.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from tui_trainer.config import ConfigError, RunConfig


@dataclass(frozen=True)
class RunRequest:
    preset: str | None = None
    """A preset's name or a YAML file's path; None: the default preset (or the resumed checkpoint's config)."""
    presets_dir: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    """Dotted keys to values, from --lr, --epochs ... --set key=value, or the setup form."""
    override_sources: dict[str, str] = field(default_factory=dict)
    """Dotted key -> the flag that set it, so an error names the flag rather than the preset file."""
    resume: str | None = None
    """A checkpoint to continue from: its own config, the overrides on top."""
    trust_code: bool = False
    """--trust-code: the resumed checkpoint may import the code its stored config names."""
    trusted_imports: tuple[str, ...] = ()
    """Import targets of the resumed checkpoint that the user confirmed in the app (exactly these may run)."""

    def resolve(self) -> tuple[RunConfig, Path | None]:
        """The run's config and where it came from (the preset file; None for a resumed checkpoint).

        A checkpoint is data: code its config names is imported only when the user trusts it (UntrustedCode
        otherwise). Raises ConfigError (or CheckpointError) with a one-line message.
        """
        from tui_trainer import presets
        from tui_trainer.config import apply_overrides, config_from_dict, require_trusted

        if self.resume:
            from tui_trainer.engine.checkpoints import load_checkpoint, refuse_script_checkpoint

            payload = load_checkpoint(self.resume, mmap=True)
            refuse_script_checkpoint(self.resume, payload)
            raw, path = payload["config"], None
            source = str(self.resume)
        else:
            path, raw = presets.load(self.preset or presets.DEFAULT_PRESET, self.presets_dir)
            source = str(path)
        try:
            raw = apply_overrides(raw, self.overrides, source=source) if self.overrides else raw
            config = config_from_dict(raw, source=source)
        except ConfigError as error:
            raise self._blame_flag(error) from None
        if self.resume:
            require_trusted(config, source, self.trust_code, list(self.trusted_imports), set(self.overrides))
        return config, path

    def config(self) -> RunConfig:
        return self.resolve()[0]

    def _blame_flag(self, error: ConfigError) -> ConfigError:
        """An error in a field that a flag set names that flag, not the preset file."""
        for key, flag in self.override_sources.items():
            if error.path == key or error.path.startswith(key + "."):
                return ConfigError(flag, error.path, error.message)
        return error

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "trusted_imports": list(self.trusted_imports)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRequest:
        """A request as to_dict wrote it (a launch file of our own); unknown keys are refused."""
        known = {item.name for item in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown run request fields: {sorted(unknown)}")
        return cls(**{**data, "trusted_imports": tuple(data.get("trusted_imports", ()))})
