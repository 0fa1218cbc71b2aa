"""Finding presets: the shipped ones, the user's folder, and folders given on the command line."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from tui_trainer.config import ConfigError, RunConfig, config_from_dict, read_preset_dict
from tui_trainer.text import printable

ENV_PRESETS_DIR = "TUI_TRAINER_PRESETS"
DEFAULT_PRESET = "digits-cnn"
PACKAGED_PRESETS = "tui_trainer.shipped_presets"
SUFFIXES = (".yaml", ".yml")


def shipped_presets_dir() -> Path:
    """The shipped presets: the package tui_trainer.shipped_presets (inside the installed wheel); or, only when
    that package cannot be imported and this is a checkout (its pyproject.toml beside it), the checkout's
    presets/. Never a bare `presets` folder beside the package: in site-packages anybody's package may make one."""
    try:
        spec = importlib.util.find_spec(PACKAGED_PRESETS)
    except ImportError:
        spec = None
    # A data package has no __init__.py; importlib.resources would hand back a MultiplexedPath, not a folder.
    for location in (spec and spec.submodule_search_locations) or ():
        if Path(location).is_dir():
            return Path(location)
    package = Path(__file__).resolve().parent
    checkout = package.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "presets").is_dir():
        return checkout / "presets"
    return package / "shipped_presets"


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
        for path in sorted(path for suffix in SUFFIXES for path in folder.glob(f"*{suffix}")):
            if path.stem in found:
                continue
            try:
                config = config_from_dict(read_preset_dict(path), source=printable(path))
                found[path.stem] = PresetEntry(path.stem, path, config.description, config.task)
            except ConfigError as error:
                found[path.stem] = PresetEntry(path.stem, path, "", "", error=str(error))
    return sorted(found.values(), key=lambda entry: entry.name)


def is_path(name_or_path: str) -> bool:
    """A preset given as a file (read from where it is), not as a name looked up in the preset folders."""
    separators = {"/", os.sep, os.altsep} - {None}
    return any(sep in name_or_path for sep in separators) or name_or_path.endswith(SUFFIXES)


def _present(path: Path) -> bool:
    """Anything by that name, even a FIFO, a folder or a dangling link: it hides a later folder's preset,
    as it does in discover(), and reading it says what is wrong with it."""
    return path.exists() or path.is_symlink()


def resolve(name_or_path: str, extra_dir: str | Path | None = None) -> Path:
    """A preset's file from its name (looked up in preset_dirs() only, never the current folder), or the path
    itself when it is one (see is_path)."""
    if "\0" in name_or_path:
        raise ConfigError("--preset", "", f"given {name_or_path!r}; a preset's name or path has no NUL byte")
    if is_path(name_or_path):
        candidate = Path(name_or_path).expanduser()
        if not _present(candidate):
            raise ConfigError(printable(candidate), "", "no such file")
        return candidate
    if not name_or_path.strip():
        raise ConfigError("--preset", "", "a preset's name is empty")
    for folder in preset_dirs(extra_dir):
        for suffix in SUFFIXES:
            path = folder / f"{name_or_path}{suffix}"
            if _present(path):
                return path
    names = [entry.name for entry in discover(extra_dir)]
    import difflib

    close = difflib.get_close_matches(name_or_path, names, n=1)
    hint = f" did you mean {close[0]!r}?" if close else ""
    here = f" (a file here is read only as a path: {'./' + name_or_path!r})" if _present(Path(name_or_path)) else ""
    raise ConfigError("--preset", "", f"no preset named {name_or_path!r};{hint} allowed: {', '.join(names)}{here}")


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
