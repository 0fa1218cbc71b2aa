"""Defect 4.13 (the command line's part): `tui-trainer runs` piped is one plain line per run, tab-separated
fields a script can cut, every id whole and the pid in a field of its own; on a terminal the id is never cut
or folded, at 80 columns too."""

from __future__ import annotations

import pytest

from tui_trainer import listing
from tui_trainer.cli import main
from tui_trainer.listing import RUN_COLUMNS
from tui_trainer.runs import registry as runinfo
from tui_trainer.runs.registry import RunInfo
from tui_trainer.text import printable

LONG_ID = "digits-cnn-with-a-long-name-for-an-experiment-20261201-101500-from-s12345"


def runs(tmp_path) -> list[RunInfo]:
    return [
        RunInfo(run_id=LONG_ID, run_dir=str(tmp_path / LONG_ID), preset="digits-cnn", state="running", pid=4242,
                detached=True, attachable=True, epoch=3, epochs=15, step=96, total_steps=480, monitor="val_accuracy",
                best=0.9733, started_at=1_764_000_000.0),
        RunInfo(run_id="iris linear (copy)", run_dir=str(tmp_path / "a"), preset="iris-linear", state="lost",
                pid=77, exit_status="killed by SIGKILL", epoch=1, epochs=2, step=8, total_steps=16),
        RunInfo(run_id="tab\there", run_dir=str(tmp_path / "b"), preset="p", state="failed",
                reason="training loss is nan\nat step 3", monitor="val_loss", best=0.25),
        RunInfo(run_id="broken", run_dir=str(tmp_path / "c"), state=runinfo.UNREADABLE,
                reason="run.json: pid: input should be a valid integer"),
    ]


@pytest.fixture
def listed(tmp_path, monkeypatch):
    infos = runs(tmp_path)
    monkeypatch.setattr(runinfo, "list_runs", lambda folder: list(infos))
    return infos


def test_piped_runs_are_one_line_each_with_fields_a_script_can_cut(tmp_path, capsys, listed):
    assert main(["runs", "--checkpoint-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(listed), "one line per run, nothing else"
    rows = [dict(zip(RUN_COLUMNS, line.split("\t"), strict=True)) for line in lines]
    assert [row["run"] for row in rows] == [printable(info.run_id) for info in listed]
    assert rows[0]["state"] == "running" and rows[0]["pid"] == "4242" and rows[0]["detached"] == "yes"
    assert rows[0]["epoch"] == "3/15" and rows[0]["step"] == "96/480"
    assert rows[0]["best"] == "97.3%" and rows[0]["monitor"] == "val_accuracy"
    assert rows[0]["started"].startswith("2025-11-2")
    assert rows[1]["state"] == "lost" and rows[1]["pid"] == "-" and rows[1]["note"] == "killed by SIGKILL"
    assert rows[2]["run"] == "tab\\there" and rows[2]["note"] == "training loss is nan\\nat step 3"
    assert rows[2]["best"] == "0.25"
    assert rows[3]["state"] == "unreadable" and "valid integer" in rows[3]["note"]
    assert all("pid" not in row["state"] for row in rows)


@pytest.mark.parametrize("columns", [80, 120])
def test_on_a_terminal_ids_are_whole_and_the_pid_is_not_in_the_state(tmp_path, capsys, listed, monkeypatch,
                                                                      columns):
    monkeypatch.setattr(listing, "_to_terminal", lambda: True)
    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.setenv("NO_COLOR", "1")
    assert main(["runs", "--checkpoint-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert all(len(line) <= columns for line in lines)
    for info in listed:
        assert any(line.startswith(printable(info.run_id)) for line in lines), info.run_id  # whole, on one line
    if columns >= 120:
        assert any(line.startswith(f"{LONG_ID}  running  started ") for line in lines)
    assert "pid 4242" not in next(line for line in lines if line.startswith(LONG_ID))
    assert any(line.strip() == "detached, pid 4242" for line in lines)
