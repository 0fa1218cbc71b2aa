"""Running the real command in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cli_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "TUI_TRAINER_PRESETS": "",
        "PYTHONUNBUFFERED": "1",
        "NO_COLOR": "1",
    })
    return env


def run_cli(args: list[str], tmp_path: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tui_trainer", *args], capture_output=True, text=True,
                          cwd=tmp_path, env=cli_env(tmp_path), timeout=timeout, stdin=subprocess.DEVNULL)


def start_cli(args: list[str], tmp_path: Path, **kwargs) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tui_trainer", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=cli_env(tmp_path),
                            stdin=subprocess.DEVNULL, **kwargs)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def run_main(argv: list[str]) -> tuple[int, str, str]:
    """`tui-trainer ARGV` in this process: (exit code, stdout, stderr)."""
    import contextlib
    import io

    from tui_trainer.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code
    return code, stdout.getvalue(), stderr.getvalue()
