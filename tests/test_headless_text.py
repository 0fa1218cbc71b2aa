"""Headless output shows a run's text as written: an escape sequence, a bell or a bidi override in a run id,
a preset, a path or a message reaches the terminal escaped (`\\x1b`), and `[red]` is not read as markup."""

from __future__ import annotations

import io
import re

from tui_trainer.engine.events import (
    CheckpointFailed,
    CheckpointSaved,
    EpochEnded,
    RunFailed,
    RunFinished,
    RunStarted,
    StateChanged,
    Warning,
)
from tui_trainer.headless import EXIT_BAD_INPUT, PlainReporter, RichReporter, print_summary, run_headless
from tui_trainer.launch import LaunchOptions

HOSTILE = ["\x1b]0;owned\x07", "\x1b[2J", "\r", "\u202e", "\x9b31m"]
"""A terminal title change, a screen clear, a carriage return, a right-to-left override, an 8-bit CSI."""
RAW = ["\x1b", "\x07", "\r", "\u202e", "\x9b"]


def events(text: str) -> list:
    return [
        RunStarted(run_id=f"run{text}", run_dir=f"/ck/run{text}", preset=f"[red]p[/red]{text}", task="classification",
                   device="cpu", device_name=f"cpu{text}", model="linear", parameters=1, train_samples=1,
                   val_samples=1, epochs=1, steps_per_epoch=1, total_steps=1, start_epoch=1, start_step=0, lr=0.1,
                   config={}),
        EpochEnded(epoch=1, step=1, train={"train_loss": 0.5}, val={"val_loss": 0.5}, lr=0.1, elapsed_s=1.0,
                   is_best=True),
        CheckpointSaved(f"/ck/run{text}/best.pt", 10, 1, 1, "best"),
        CheckpointFailed(f"/ck/run{text}/last.pt", f"not saved: disk{text}", "last"),
        Warning(f"careful{text}"),
        RunFailed(f"broke{text}", "error", f"advice{text}"),
        StateChanged("stopping", f"asked{text}"),
    ]


def finished(text: str) -> RunFinished:
    return RunFinished(state="finished", epoch=2, step=1, elapsed_s=1.0, best={}, last={}, best_epoch=None,
                       checkpoint=f"/ck/run{text}/best.pt", message=f"done{text}",
                       unsaved=[f"/ck/run{text}/last.pt"])


def assert_shown_literally(out: str) -> None:
    for raw in RAW:
        assert raw not in out, repr(raw)
    assert "\\x1b]0;owned\\x07" in out and "\\x1b[2J" in out and "\\r" in out and "\\u202e" in out


def test_plain_lines_escape_control_characters():
    for text in HOSTILE:
        out = io.StringIO()
        reporter = PlainReporter(out)
        for event in events(text):
            reporter(event)
        print_summary(finished(text), out)
        for raw in RAW:
            assert raw not in out.getvalue(), (text, raw)
    out = io.StringIO()
    reporter = PlainReporter(out)
    for text in HOSTILE:
        for event in events(text):
            reporter(event)
        print_summary(finished(text), out)
    assert_shown_literally(out.getvalue())


def test_the_rich_display_shows_markup_and_escapes_literally():
    from rich.console import Console

    out = io.StringIO()
    reporter = RichReporter(Console(file=out, force_terminal=True, color_system=None, width=200))
    for text in HOSTILE:
        for event in events(text):
            reporter(event)
    reporter(finished(""))
    # The progress display's own cursor moves, line clears and carriage returns are Rich's, not the run's.
    shown = re.sub(r"\x1b\[(\?25[lh]|2K|1A)", "", out.getvalue()).replace("\r", "")
    assert_shown_literally(shown)
    assert "[red]p[/red]" in shown, "a preset's brackets are text, not markup"
    assert "(best)" in shown


def test_an_error_naming_a_hostile_path_is_escaped(tmp_path, capsys):
    path = tmp_path / "ck\x1b]0;owned\x07.pt"
    code = run_headless(LaunchOptions(resume=str(path)), out=io.StringIO())
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert "\x1b" not in err and "\x07" not in err
    assert "ck\\x1b]0;owned\\x07.pt: no such file" in err and len(err.splitlines()) == 1
