"""What a user may call a checkpoint they save: a name the run will never prune, hide, clean up or overwrite.

The run owns some names in its folder: its periodic checkpoints (`epoch-*.pt`, pruned to `keep_last`),
last.pt and best.pt (rewritten), its records (run.json, config.yaml, metrics.jsonl, engine.log, control.sock)
and dot-files (an unfinished save's `.tmp-*` is deleted on the next start and never listed). A user's save
takes none of them, in any folder, so a checkpoint saved by hand stays where it was put. The rule is one
function, used by the save panel, the control socket and the trainer alike.
"""

from __future__ import annotations

import os
from pathlib import Path

from tui_trainer.engine.checkpoints import SUFFIX, TEMP_PREFIX
from tui_trainer.run_files import CONFIG_FILE, ENGINE_LOG, METRICS_FILE, RUN_FILE, SOCKET_FILE
from tui_trainer.text import printable

RUN_FILES = frozenset({RUN_FILE, SOCKET_FILE, CONFIG_FILE, METRICS_FILE, ENGINE_LOG, "last.pt", "best.pt"})
"""Files a run writes in its folder (the trainer's, the run registry's, the detached launcher's)."""
PERIODIC_PREFIX = "epoch-"
TEMP_RANDOM = ".XXXXXXXX"
"""What tempfile.mkstemp adds after the prefix save_checkpoint gives it (a dot and 8 random characters)."""
NAME_MAX_FALLBACK = 255
MAX_PATH_CHARS = 4096
SEPARATORS = frozenset(filter(None, ("/", os.sep, os.altsep)))


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a path too long, or with a NUL in it
        return False


def name_max(folder: str | Path) -> int:
    """The longest file name (in bytes) folder's file system takes; for a folder not made yet, its nearest
    existing parent's."""
    place = Path(folder).expanduser().absolute()
    while not _exists(place) and place != place.parent:
        place = place.parent
    try:
        limit = os.pathconf(place, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return NAME_MAX_FALLBACK
    return limit if isinstance(limit, int) and limit > 0 else NAME_MAX_FALLBACK


def allowed(folder: str | Path = ".") -> str:
    longest = name_max(folder) - len(TEMP_PREFIX) - len(TEMP_RANDOM)
    return (f"allowed: a file name ending in {SUFFIX}, at most {longest} bytes, without '/' or control characters, "
            f"not starting with '.' or '{PERIODIC_PREFIX}', and not one of the run's own files "
            f"({', '.join(sorted(RUN_FILES))})")


def _problem(name: str, folder: str | Path) -> str:
    if not name or name in (".", ".."):
        return "is not a file name"
    if SEPARATORS & set(name):
        return "has a folder separator in it (give the folder in its own field)"
    if printable(name) != name:  # NUL, escape sequences, line breaks, bidi controls
        return "has control characters in it"
    if name.startswith("."):
        return "starts with '.' (hidden, and the run deletes its unfinished '.tmp-' files)"
    stem = name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name
    if name in RUN_FILES or stem in RUN_FILES:
        return "is one of the run's own files"
    if name.startswith(PERIODIC_PREFIX):
        return f"starts with '{PERIODIC_PREFIX}', as the periodic checkpoints the run prunes do"
    if not name.endswith(SUFFIX):
        return f"does not end in {SUFFIX} (the load panel lists {SUFFIX} files only)"
    try:
        size = len(os.fsencode(TEMP_PREFIX + name + TEMP_RANDOM))
    except UnicodeError:
        return "cannot be written in the file system's encoding"
    if size > name_max(folder):
        return f"is too long for the file system ({len(os.fsencode(name))} bytes)"
    return ""


def save_name_problem(name: str, folder: str | Path) -> str:
    """Why a checkpoint the user saves cannot have the file name `name` (with its .pt) in folder, as one line
    that says what is allowed; "" when it can."""
    if "\0" in str(folder):
        return "checkpoint folder has a NUL character in it"
    problem = _problem(name, folder)
    return f"checkpoint name {name[:80]!r} {problem}; {allowed(folder)}" if problem else ""


def save_path_problem(path: str) -> str:
    """save_name_problem for a whole path (a Save command's); the folder is the user's choice."""
    if len(path) > MAX_PATH_CHARS:
        return f"checkpoint path is longer than {MAX_PATH_CHARS} characters"
    folder, name = os.path.split(path)
    return save_name_problem(name, folder or ".")
