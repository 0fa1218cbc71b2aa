"""Finding presets: the shipped ones, the user's folder, and folders given on the command line."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tui_trainer.config import ConfigError, RunConfig, config_from_dict, read_preset_dict

ENV_PRESETS_DIR = "TUI_TRAINER_PRESETS"
DEFAULT_PRESET = "digits-cnn"


def shipped_presets_dir() -> Path:
    """presets/ at the top of a checkout, or its copy inside an installed wheel (tui_trainer.shipped_presets)."""
    checkout = Path(__file__).resolve().parent.parent / "presets"
    if checkout.is_dir():
        return checkout
    return Path(str(resources.files("tui_trainer.shipped_presets")))


def user_presets_dir() -> Path:
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "tui-trainer" / "presets"


def preset_dirs(extra: str | Path | None = None) -> list[Path]:
    """Where presets are looked for, first match wins: --presets-dir, $TUI_TRAINER_PRESETS, the user's
    folder, then the shipped presets."""
    dirs = []
    if extra:
        dirs.append(Path(extra).expanduser())
    if os.environ.get(ENV_PRESETS_DIR):
        dirs.extend(Path(part).expanduser() for part in os.environ[ENV_PRESETS_DIR].split(os.pathsep) if part)
    dirs += [user_presets_dir(), shipped_presets_dir()]
    return dirs


@dataclass(frozen=True)
class PresetEntry:
    name: str
    path: Path
    description: str
    task: str
    error: str | None = None
    """Why this file is not a valid preset (listed anyway, so the user sees it)."""


def discover(extra_dir: str | Path | None = None) -> list[PresetEntry]:
    """All presets by name; a name in an earlier folder hides the same name later on."""
    found: dict[str, PresetEntry] = {}
    for folder in preset_dirs(extra_dir):
        if not folder.is_dir():
            continue
        for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            if path.stem in found:
                continue
            try:
                config = config_from_dict(read_preset_dict(path), source=str(path))
                found[path.stem] = PresetEntry(path.stem, path, config.description, config.task)
            except ConfigError as error:
                found[path.stem] = PresetEntry(path.stem, path, "", "", error=str(error))
    return sorted(found.values(), key=lambda entry: entry.name)


def resolve(name_or_path: str, extra_dir: str | Path | None = None) -> Path:
    """A preset's file from its name, or the path itself when it names a file."""
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix in (".yaml", ".yml") or os.sep in name_or_path or candidate.is_file():
        if not candidate.is_file():
            raise ConfigError(str(candidate), "", "no such file")
        return candidate
    for folder in preset_dirs(extra_dir):
        for suffix in (".yaml", ".yml"):
            path = folder / f"{name_or_path}{suffix}"
            if path.is_file():
                return path
    names = [entry.name for entry in discover(extra_dir)]
    import difflib

    close = difflib.get_close_matches(name_or_path, names, n=1)
    hint = f" did you mean {close[0]!r}?" if close else ""
    raise ConfigError("--preset", "", f"no preset named {name_or_path!r};{hint} allowed: {', '.join(names)}")


def load(name_or_path: str, extra_dir: str | Path | None = None) -> tuple[Path, dict]:
    """The preset's path and its raw dict (for overrides before validation)."""
    path = resolve(name_or_path, extra_dir)
    return path, read_preset_dict(path)


def load_config(name_or_path: str, overrides: dict | None = None,
                extra_dir: str | Path | None = None) -> RunConfig:
    from tui_trainer.config import apply_overrides

    path, raw = load(name_or_path, extra_dir)
    if overrides:
        raw = apply_overrides(raw, overrides, source=str(path))
    return config_from_dict(raw, source=str(path))
