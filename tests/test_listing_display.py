"""`tui-trainer presets`, `checkpoints` and `runs` show file and folder text as written: Rich markup in a name is
not interpreted, escape sequences are not obeyed, and --json stays valid JSON."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

import pytest

from tests.cli_helpers import ROOT, cli_env
from tui_trainer.cli import main
from tui_trainer.text import printable

MARKUP = ["[bold]x[/bold]", "[link=https://e.vil]click[/link]", "[/]", "[", "a]b[", "[red", "[/red]", ":smile:",
          "\\[escaped]", "[on red]x"]
CONTROLS = ["\x1b]0;pwned\x07", "\x1b[2J", "\x9b31m", "a\rb", "\u202egnp.exe", "x\x00y", "\x08\x08", "line\nbreak",
            "\x1bP+q\x1b\\"]
# What must never reach the terminal raw (the escapes above, and the bidi override).
RAW = ["\x1b", "\x07", "\x9b", "\r", "\u202e", "\x00", "\x08"]
# Names a file may have (no "/" and no NUL).
FILE_NAMES = ["a[bold]x", "d[", "[red]g", "e\x1b]0;pwned\x07", "f\x1b[2J", "h\u202ei", "i\rj", "k[link=x]l"]

IRIS = (ROOT / "presets" / "iris-linear.yaml").read_text(encoding="utf-8")


@pytest.fixture(autouse=True)
def wide(monkeypatch):
    """Wide enough that no cell is folded, so each text shows whole on one line."""
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.setenv("NO_COLOR", "1")


def assert_nothing_raw(output: str) -> None:
    for char in RAW:
        assert char not in output, (char, output)


def preset_text(description: str) -> str:
    # JSON's string escapes are YAML's: any character can be written into the description.
    return IRIS.replace("description: Linear classifier on scikit-learn's iris (offline)",
                        f"description: {json.dumps(description)}")


# ---------------------------------------------------------------- presets


@pytest.mark.parametrize("text", MARKUP + CONTROLS)
def test_a_preset_description_is_shown_as_written(tmp_path, capsys, text):
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "mine.yaml").write_text(preset_text(f"before {text} after"), encoding="utf-8")
    assert main(["presets", "--presets-dir", str(folder)]) == 0
    output = capsys.readouterr().out
    assert printable(f"before {text} after") in output
    assert_nothing_raw(output)


def test_preset_file_names_are_shown_as_written(tmp_path, capsys):
    folder = tmp_path / "p"
    folder.mkdir()
    for name in FILE_NAMES:
        (folder / f"{name}.yaml").write_text(IRIS, encoding="utf-8")
    (folder / "[red]broken.yaml").write_text("task: [\n", encoding="utf-8")
    assert main(["presets", "--presets-dir", str(folder)]) == 0
    output = capsys.readouterr().out
    for name in [*FILE_NAMES, "[red]broken"]:
        assert printable(name) in output, name
        assert printable(folder / f"{name}.yaml") in output, name
    assert "invalid: " + printable(folder / "[red]broken.yaml") + ": YAML syntax error" in output
    assert_nothing_raw(output)


def test_a_preset_error_is_shown_as_written(tmp_path, capsys):
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "bad.yaml").write_text(IRIS.replace("source: iris", 'source: "[/]\\e]0;pwned\\a[bold]"'),
                                     encoding="utf-8")
    assert main(["presets", "--presets-dir", str(folder)]) == 0
    output = capsys.readouterr().out
    assert "invalid:" in output and "[/]" in output and "[bold]" in output
    assert_nothing_raw(output)


def test_presets_json_is_valid_and_escaped(tmp_path, capsys):
    folder = tmp_path / "p"
    folder.mkdir()
    for index, text in enumerate(MARKUP + CONTROLS):
        (folder / f"p{index}.yaml").write_text(preset_text(text), encoding="utf-8")
    for name in FILE_NAMES:
        (folder / f"{name}.yaml").write_text("task: [\n", encoding="utf-8")
    assert main(["presets", "--presets-dir", str(folder), "--json"]) == 0
    output = capsys.readouterr().out
    assert_nothing_raw(output)
    entries = {entry["name"]: entry for entry in map(strict_json, output.splitlines())}
    for index, text in enumerate(MARKUP + CONTROLS):
        assert entries[f"p{index}"]["description"] == text
    for name in FILE_NAMES:
        assert entries[name]["error"]


def strict_json(line: str):
    def refuse(constant: str):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(line, parse_constant=refuse)


def test_presets_on_a_real_terminal_obey_no_planted_sequence(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "f\x1b[2J.yaml").write_text(preset_text("\x1b]0;pwned\x07 [/] [bold]\x1b[31mred"), encoding="utf-8")
    env = {**cli_env(tmp_path), "TERM": "xterm-256color", "COLUMNS": "300"}
    env.pop("NO_COLOR")
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "tui_trainer", "presets", "--presets-dir", str(folder)],
                               stdin=follower, stdout=follower, stderr=follower, cwd=tmp_path, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=60) == 0
    output = b"".join(chunks).decode("utf-8", errors="replace")
    for planted in ("\x1b]0;pwned", "\x1b[2J", "\x1b[31m", "\x07"):
        assert planted not in output, planted
    assert "\\x1b]0;pwned\\x07 [/] [bold]\\x1b[31mred" in output
    assert "f\\x1b[2J" in output


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_folders_and_files_with_markup_and_escapes(tmp_path, capsys):
    folders = {"foo[": "x].pt", "ck\x1b[2J": "a\x1b]0;pwned\x07.pt", "[bold]": "[red].pt", "r\u202e": "[link=x].pt"}
    for folder, file in folders.items():
        (tmp_path / folder / "run[red]").mkdir(parents=True)
        (tmp_path / folder / "run[red]" / file).write_bytes(b"not a checkpoint")
        assert main(["checkpoints", str(tmp_path / folder)]) == 0
        output = capsys.readouterr().out
        assert printable(f"run[red]/{file}") in output, output
        assert printable(f"Checkpoints in {tmp_path / folder}") in output
        assert "not a checkpoint" in output
        assert_nothing_raw(output)
        assert main(["checkpoints", str(tmp_path / folder), "--json"]) == 0
        output = capsys.readouterr().out
        assert_nothing_raw(output)
        [entry] = map(strict_json, output.splitlines())
        assert entry["path"] == str(tmp_path / folder / "run[red]" / file)


@pytest.mark.parametrize("name", ["empty[/]", "e\x1b[2J", "n\x00ul"])
def test_an_empty_or_missing_checkpoint_folder_is_named_as_written(tmp_path, capsys, name):
    if "\x00" not in name:
        (tmp_path / name).mkdir(parents=True)
        assert main(["checkpoints", str(tmp_path / name)]) == 0
    else:
        assert main(["checkpoints", str(tmp_path / name)]) == 2
    output = capsys.readouterr().out
    assert printable(tmp_path / name) in output
    assert_nothing_raw(output)


@pytest.fixture
def fake_checkpoints(monkeypatch):
    """list_checkpoints answers with the given infos (what a malformed file could make it return)."""
    from tui_trainer.engine import checkpoints

    def install(*infos):
        monkeypatch.setattr(checkpoints, "list_checkpoints", lambda folder: list(infos))

    return install


def test_checkpoint_metadata_is_shown_as_written(tmp_path, capsys, fake_checkpoints):
    from tui_trainer.engine.checkpoints import CheckpointInfo

    texts = MARKUP + CONTROLS
    files = {text: tmp_path / "run" / f"{text.replace('/', '|')}.pt" for text in texts}
    fake_checkpoints(
        *[CheckpointInfo(path=str(files[text]), size_bytes=10, error=f"bad: {text}") for text in texts],
        CheckpointInfo(path=str(tmp_path / "nan.pt"), size_bytes=-5, val_loss=float("nan"),
                       val_accuracy=float("inf"), saved_at=1e300),
        CheckpointInfo(path="/elsewhere/[bold]outside.pt", size_bytes=10**30, val_loss=1.0, saved_at=-1e20),
    )
    assert main(["checkpoints", str(tmp_path)]) == 0
    output = capsys.readouterr().out
    for text in texts:
        assert printable(files[text].relative_to(tmp_path)) in output, text
        assert printable(f"bad: {text}") in output, text
    assert "/elsewhere/[bold]outside.pt" in output and "n/a" in output
    assert_nothing_raw(output)

    assert main(["checkpoints", str(tmp_path), "--json"]) == 0
    output = capsys.readouterr().out
    assert_nothing_raw(output)
    entries = [strict_json(line) for line in output.splitlines()]
    assert [entry["error"] for entry in entries[:len(texts)]] == [f"bad: {text}" for text in texts]
    assert entries[len(texts)]["val_loss"] is None and entries[len(texts)]["val_accuracy"] is None


# ---------------------------------------------------------------- runs


@pytest.fixture
def fake_runs(monkeypatch):
    from tui_trainer.runs import registry as runinfo

    def install(*infos):
        monkeypatch.setattr(runinfo, "list_runs", lambda folder: list(infos))

    return install


def test_runs_are_shown_as_written(tmp_path, capsys, fake_runs, wide, monkeypatch):
    from tui_trainer import listing
    from tui_trainer.runs.registry import RunInfo

    texts = MARKUP + CONTROLS
    runs = []
    for index, text in enumerate(texts):
        runs.append(RunInfo(run_id=f"id{index} {text}", run_dir=str(tmp_path / text.replace("/", "|")),
                            preset=f"preset {text}", state=("running", "lost", "finished")[index % 3], pid=42,
                            exit_status=f"exit {text}", monitor=f"monitor {text}", best=0.5, started_at=1e300))
    runs.append(RunInfo(run_id="nan", run_dir=str(tmp_path / "nan"), state="finished", best=float("nan"),
                        started_at=float("inf")))
    fake_runs(*runs)
    for terminal in (True, False):  # a table on a terminal, tab-separated lines otherwise
        monkeypatch.setattr(listing, "_to_terminal", lambda terminal=terminal: terminal)
        assert main(["runs", "--checkpoint-dir", str(tmp_path / "[bold]runs\x1b[2J")]) == 0
        output = capsys.readouterr().out
        for index, text in enumerate(texts):
            assert printable(f"id{index} {text}") in output, text
            assert printable(f"preset {text}") in output, text
            assert printable(f"monitor {text}") in output, text
            if index % 3 == 1:
                assert printable(f"exit {text}") in output, text
        if terminal:
            assert printable(f"Runs in {tmp_path}/[bold]runs\x1b[2J") in output
        assert_nothing_raw(output)

    assert main(["runs", "--checkpoint-dir", str(tmp_path), "--json"]) == 0
    output = capsys.readouterr().out
    assert_nothing_raw(output)
    entries = [strict_json(line) for line in output.splitlines()]
    assert [entry["run_id"] for entry in entries[:len(texts)]] == [f"id{index} {text}" for index, text in
                                                                   enumerate(texts)]
    assert entries[-1]["best"] is None and entries[-1]["started_at"] is None


@pytest.mark.parametrize("name", ["none[/]", "n\x1b]0;pwned\x07"])
def test_no_runs_names_the_folder_as_written(tmp_path, capsys, name):
    assert main(["runs", "--checkpoint-dir", str(tmp_path / name)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "", "piped: no line at all when there is no run"
    assert printable(f"No runs under {tmp_path / name}.") in captured.err
    assert_nothing_raw(captured.err)


def test_runs_say_why_a_run_ended_badly_and_why_a_record_is_unreadable(tmp_path, capsys, wide):
    from tui_trainer.engine.events import RunFinished, RunStarted
    from tui_trainer.runs.registry import RunInfoWriter

    run_dir = tmp_path / "iris-1"
    run_dir.mkdir()
    writer = RunInfoWriter()
    writer(RunStarted(run_id="iris-1", run_dir=str(run_dir), preset="iris-linear", task="classification",
                      device="cpu", device_name="CPU", model="linear", parameters=15, train_samples=120,
                      val_samples=30, epochs=2, steps_per_epoch=4, total_steps=8, start_epoch=1, start_step=0,
                      lr=0.1, config={}))
    writer(RunFinished(state="finished", epoch=3, step=8, elapsed_s=1.0, best={}, last={}, best_epoch=None,
                       checkpoint=None, unsaved=[str(run_dir / "last.pt")]))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.json").write_text('{"pid": "seven"}')
    assert main(["runs", "--checkpoint-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "not saved" in out and "last.pt" in out and "the run's end is not on disk" in out
    assert "unreadable" in out and "broken" in out
