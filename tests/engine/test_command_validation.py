"""Commands and the names of saves: a command from JSON fits its schema and the preset's bounds or is refused
with one line; the tweak panel takes the same bounds; a name the run would prune, hide or clean up is refused
before anything is written, by the rule the save panel, the socket and the trainer share."""

from __future__ import annotations

import json
import os

import pytest
from pydantic import ValidationError

from tui_trainer.config import OptimizerConfig
from tui_trainer.engine import save_names
from tui_trainer.engine.checkpoints import list_checkpoints, save_checkpoint
from tui_trainer.engine.controls import (
    MAX_WAITING_COMMANDS,
    CommandError,
    Controls,
    Pause,
    Save,
    SetHyperparameters,
    Stop,
    allowed_values,
    command_from_dict,
    hyperparameter_problem,
)
from tui_trainer.engine.events import CheckpointFailed, CheckpointSaved, Progress
from tui_trainer.engine.save_names import save_name_problem, save_path_problem

# ---------------------------------------------------------------- commands from JSON

BAD_COMMANDS = [
    ({"type": "save", "path": 5}, "save.path"),
    ({"type": "save", "path": ["a.pt"]}, "save.path"),
    ({"type": "save", "path": "x" * 5000 + ".pt"}, "save.path"),
    ({"type": "save", "path": ""}, "save.path"),
    ({"type": "set_hyperparameters", "lr": "abc"}, "set_hyperparameters.lr"),
    ({"type": "set_hyperparameters", "lr": "0.1"}, "set_hyperparameters.lr"),
    ({"type": "set_hyperparameters", "lr": True}, "set_hyperparameters.lr"),
    ({"type": "set_hyperparameters", "lr": float("nan")}, "set_hyperparameters.lr"),
    ({"type": "set_hyperparameters", "lr": float("inf")}, "set_hyperparameters.lr"),
    ({"type": "set_hyperparameters", "lr": 1000}, "set_hyperparameters.lr"),
    ({"type": "set_hyperparameters", "lr": 10**400}, "set_hyperparameters.lr"),
    ({"type": "set_hyperparameters", "weight_decay": 1e308}, "set_hyperparameters.weight_decay"),
    ({"type": "set_hyperparameters", "weight_decay": -1e-9}, "set_hyperparameters.weight_decay"),
    ({"type": "set_hyperparameters", "momentum": 1.0}, "set_hyperparameters.momentum"),
    ({"type": "set_hyperparameters", "momentum": {"a": 1}}, "set_hyperparameters.momentum"),
    ({"type": "set_hyperparameters"}, "nothing to change"),
    ({"type": "set_hyperparameters", "lr": None}, "nothing to change"),
    ({"type": "set_hyperparameters", "beta": 0.5}, "unknown field 'beta'"),
    ({"type": "pause", "extra": 1}, "unknown field 'extra'"),
    ({"type": "resume", "now": True}, "unknown field 'now'"),
    ({"type": "stop", "save": "yes"}, "stop.save"),
    ({"type": "stop", "save": 1}, "stop.save"),
    ({"type": "stop", "reason": "x" * 100_000}, "stop.reason"),
    ({"type": "stop", "reason": [[[[[]]]]]}, "stop.reason"),
    ({"type": "stop", "force": True}, "unknown field 'force'"),
    ({"type": "format_disk"}, "unknown command type 'format_disk'"),
    ({"type": ["pause"]}, "unknown command type"),
    ({"type": None}, "unknown command type"),
    ({}, "unknown command type"),
    ([{"type": "pause"}], "a command is a JSON object"),
    ("pause", "a command is a JSON object"),
    (5, "a command is a JSON object"),
]


@pytest.mark.parametrize(("data", "names"), BAD_COMMANDS, ids=lambda value: repr(value)[:40])
def test_a_malformed_command_is_refused_with_one_line_naming_what_is_wrong(data, names):
    with pytest.raises(CommandError) as refused:
        command_from_dict(data)
    message = str(refused.value)
    assert names in message
    assert "\n" not in message and len(message) < 400


def test_every_refusal_is_a_command_error_whatever_comes_after_json():
    # Whatever json.loads may return: no other exception escapes.
    for text in ["null", "true", "[]", '"x"', "1e999", '{"type": "pause", "a": NaN}', '{"type": {"$gt": ""}}',
                 '{"type": "save", "path": {"__class__": 1}}', '{"type": "stop", "reason": -Infinity}']:
        with pytest.raises(CommandError):
            command_from_dict(json.loads(text))


def test_valid_commands_still_come_through():
    assert command_from_dict({"type": "set_hyperparameters", "lr": 1}) == SetHyperparameters(lr=1.0)
    assert command_from_dict({"type": "set_hyperparameters", "lr": 100, "momentum": 0, "weight_decay": None}) == \
        SetHyperparameters(lr=100.0, momentum=0.0)
    assert command_from_dict({"type": "stop", "save": False, "reason": "bye"}) == Stop(save=False, reason="bye")
    assert command_from_dict({"type": "save", "path": None}) == Save()


def _preset_accepts(name: str, value: float) -> bool:
    try:
        OptimizerConfig(name="sgd", **{name: value})
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("name", ["lr", "weight_decay", "momentum"])
@pytest.mark.parametrize("value", [-1.0, -1e-12, 0.0, 1e-9, 0.5, 0.999, 1.0, 9.99, 10.0, 10.5, 100.0, 100.01,
                                   1000.0, 1e308])
def test_a_command_takes_exactly_the_bounds_of_the_preset(name, value):
    accepted = _preset_accepts(name, value)
    try:
        command_from_dict({"type": "set_hyperparameters", name: value})
        command_ok = True
    except CommandError:
        command_ok = False
    assert command_ok == accepted
    assert (hyperparameter_problem(name, value) == "") == accepted


@pytest.mark.parametrize(("name", "text", "value"), [("lr", "1000", 1000.0), ("lr", "100.5", 100.5),
                                                     ("weight_decay", "1e308", 1e308), ("weight_decay", "11", 11.0),
                                                     ("momentum", "1", 1.0), ("lr", "0", 0.0), ("lr", "1e999", None),
                                                     ("lr", "nan", None), ("lr", "abc", None)])
def test_the_tweak_panel_refuses_what_the_preset_refuses(name, text, value):
    from tui_trainer.ui.screens.tweaks import check_value

    checked, problem = check_value(name, text)
    assert checked is None and problem.startswith(f"{name}: ")
    assert allowed_values(name) in problem
    if value is not None:
        assert not _preset_accepts(name, value)


def test_the_tweak_panel_takes_what_the_preset_takes():
    from tui_trainer.ui.screens.tweaks import check_value

    assert check_value("lr", " 100 ") == (100.0, "")
    assert check_value("weight_decay", "10") == (10.0, "")
    assert check_value("momentum", "0") == (0.0, "")
    assert allowed_values("lr") == "a number > 0 and <= 100"
    assert allowed_values("momentum") == "a number >= 0 and < 1"


# ---------------------------------------------------------------- save names

RESERVED = ["epoch-0000-mine.pt", "epoch-9999.pt", "epoch-.pt", ".tmp-mine.pt", ".hidden.pt", "..pt", "last.pt",
            "best.pt", "run.json", "run.json.pt", "config.yaml.pt", "metrics.jsonl", "metrics.jsonl.pt",
            "control.sock.pt", "engine.log.pt"]
UNSAFE = ["a/b.pt", "/abs.pt", "../up.pt", "a\0b.pt", "a\x1b[31mb.pt", "line\nbreak.pt", "tab\there.pt",
          "bidi\u202eevil.pt", "del\x7f.pt", "", ".", ".."]


@pytest.mark.parametrize("name", RESERVED + UNSAFE, ids=repr)
def test_a_name_the_run_owns_or_cannot_show_is_refused_saying_what_is_allowed(name, tmp_path):
    problem = save_name_problem(name, tmp_path)
    assert problem.startswith("checkpoint name ") and "allowed: a file name ending in .pt" in problem
    assert problem.isprintable(), "one line, control characters escaped"


@pytest.mark.parametrize("name", ["mine.pt", "epoch.pt", "my-epoch-3.pt", "last-good.pt", "bests.pt", "résumé.pt",
                                  "with space.pt", "digits-mlp-e3-s120.pt", "a.b.c.pt", "日本語.pt"])
def test_ordinary_names_are_allowed(name, tmp_path):
    assert save_name_problem(name, tmp_path) == ""
    assert save_path_problem(str(tmp_path / name)) == ""


def test_a_whole_path_is_checked_by_its_file_name_and_may_go_to_any_folder(tmp_path):
    assert save_path_problem(str(tmp_path / "elsewhere" / "deeper" / "mine.pt")) == ""
    assert save_path_problem("relative.pt") == ""
    assert "is not a file name" in save_path_problem(str(tmp_path) + "/")
    assert "NUL" in save_path_problem(str(tmp_path / "a\0b" / "mine.pt"))
    assert "epoch-" in save_path_problem(str(tmp_path / "epoch-0001.pt"))
    assert "does not end in .pt" in save_path_problem(str(tmp_path / "notes.txt"))
    assert "one of the run's own files" in save_path_problem(str(tmp_path / "metrics.jsonl"))


def test_the_longest_name_allowed_saves_atomically_and_one_byte_more_is_refused(tmp_path):
    limit = save_names.name_max(tmp_path)
    longest = limit - len(".tmp-") - len(".XXXXXXXX")
    fits = "é" * ((longest - 3) // 2) + "x" * ((longest - 3) % 2) + ".pt"  # counted in bytes, not characters
    assert len(os.fsencode(fits)) == longest
    assert save_name_problem(fits, tmp_path) == ""
    assert save_checkpoint(tmp_path / fits, b"payload") == len(b"payload")  # the temp file's name fits too
    assert [os.path.basename(info.path) for info in list_checkpoints(tmp_path)] == [fits]
    one_more = "x" + fits
    problem = save_name_problem(one_more, tmp_path)
    assert "too long" in problem and f"at most {longest} bytes" in problem
    longer = "é" + fits
    assert "too long" in save_name_problem(longer, tmp_path)


def test_the_length_limit_is_the_folders_file_system_s(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "pathconf", lambda path, name: 40)
    assert save_name_problem("x" * 23 + ".pt", tmp_path) == ""  # 26 + 14 = 40
    assert "too long" in save_name_problem("x" * 24 + ".pt", tmp_path)
    assert save_names.name_max(tmp_path / "not" / "made" / "yet") == 40

    def unsupported(path, name):
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(os, "pathconf", unsupported)
    assert save_names.name_max(tmp_path) == save_names.NAME_MAX_FALLBACK


# ---------------------------------------------------------------- the trainer keeps to the rule


def test_the_trainer_refuses_a_save_under_a_name_it_would_prune_or_hide(make_config, run_trainer):
    def handler(event, trainer):
        if isinstance(event, Progress) and event.step == 2:
            run_dir = trainer.run_dir
            for name in ("epoch-0000-mine.pt", ".tmp-mine.pt", "last.pt", "metrics.jsonl", "a\x1bb.pt"):
                trainer.controls.save(str(run_dir / name))
            trainer.controls.save(str(run_dir / "mine.pt"))

    config = make_config("iris-linear", epochs=3, logging__every_steps=1,
                         checkpoint={"every_epochs": 1, "keep_last": 1})
    finished, events, trainer = run_trainer(config, handler=handler)
    assert finished.state == "finished"
    failed = [event for event in events.of(CheckpointFailed) if event.reason == "manual"]
    assert [os.path.basename(event.path) for event in failed] == ["epoch-0000-mine.pt", ".tmp-mine.pt", "last.pt",
                                                                   "metrics.jsonl", "a\x1bb.pt"]
    assert all("allowed:" in event.message for event in failed)
    saved = [event.path for event in events.of(CheckpointSaved) if event.reason == "manual"]
    assert [os.path.basename(path) for path in saved] == ["mine.pt"]
    names = sorted(path.name for path in trainer.run_dir.iterdir())
    assert "mine.pt" in names and "epoch-0000-mine.pt" not in names and not any(n.startswith(".tmp-") for n in names)
    assert (trainer.run_dir / "metrics.jsonl").stat().st_size > 0, "not overwritten by a checkpoint"


@pytest.mark.parametrize("reason", ["loading /" + "d/" * 3000 + "x.pt", "r" * 1001, "received SIGTERM"])
def test_the_apps_own_stops_always_fit_the_schema_they_cross_the_socket_by(reason):
    from tui_trainer.engine.controls import Controls

    controls = Controls()
    controls.stop(save=True, reason=reason)
    (stop,) = controls.drain()
    assert command_from_dict(json.loads(json.dumps(stop.to_dict()))) == stop
    assert reason.startswith(stop.reason)


@pytest.mark.parametrize("command", [SetHyperparameters(lr=1000.0), SetHyperparameters(weight_decay=1e308),
                                     SetHyperparameters(momentum=1.0), SetHyperparameters(lr=float("nan")),
                                     SetHyperparameters(), Stop(reason="x" * 5000)])
def test_a_command_made_in_this_process_takes_the_same_bounds(command):
    """A dataclass is not validated when it is built: Controls checks it as the socket would."""
    controls = Controls()
    with pytest.raises(CommandError):
        controls.send(command)
    assert not controls.has_pending()


def test_a_flood_of_commands_is_refused_once_the_queue_is_full():
    controls = Controls()
    for _ in range(MAX_WAITING_COMMANDS):
        controls.send(Pause())
    with pytest.raises(CommandError, match="already waiting"):
        controls.send(Pause())
    assert len(controls.drain()) == MAX_WAITING_COMMANDS
    controls.send(Pause())  # room again once the loop has taken them
