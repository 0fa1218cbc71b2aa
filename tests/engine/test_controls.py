"""Controls: a thread-safe mailbox of commands, each one JSON object across a process boundary."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tui_trainer.engine.controls import (
    COMMAND_TYPES,
    CommandError,
    Controls,
    Pause,
    Resume,
    Save,
    SetHyperparameters,
    Stop,
    command_from_dict,
)

COMMANDS = [Pause(), Resume(), Stop(), Stop(save=False, reason="signal SIGTERM"), Save(), Save(path="/tmp/x.pt"),
            SetHyperparameters(lr=0.001), SetHyperparameters(weight_decay=0.1, momentum=0.5)]


@pytest.mark.parametrize("command", COMMANDS, ids=repr)
def test_commands_round_trip_through_json(command):
    text = json.dumps(command.to_dict())
    data = json.loads(text)
    assert data["type"] == command.kind
    assert command_from_dict(data) == command


def test_every_command_type_is_registered():
    assert set(COMMAND_TYPES) == {"pause", "resume", "stop", "set_hyperparameters", "save"}
    assert {type(command) for command in COMMANDS} == set(COMMAND_TYPES.values())


def test_unknown_command_is_refused():
    with pytest.raises(CommandError):
        command_from_dict({"type": "format_disk"})
    with pytest.raises(CommandError):
        command_from_dict({"type": "pause", "extra": 1})


def test_set_hyperparameters_lists_only_what_changes():
    assert SetHyperparameters(lr=0.5).changes() == {"lr": 0.5}
    assert SetHyperparameters(momentum=0.0).changes() == {"momentum": 0.0}
    assert SetHyperparameters().changes() == {}


def test_commands_are_frozen():
    with pytest.raises(AttributeError):
        Stop().save = False  # type: ignore[misc]


def test_send_and_drain_keep_order():
    controls = Controls()
    assert not controls.has_pending() and controls.drain() == []
    controls.pause()
    controls.set_hyperparameters(lr=0.1)
    controls.save("a.pt")
    controls.resume()
    controls.stop(save=False, reason="bye")
    assert controls.has_pending()
    assert controls.drain() == [Pause(), SetHyperparameters(lr=0.1), Save("a.pt"), Resume(),
                                Stop(save=False, reason="bye")]
    assert not controls.has_pending()


def test_wait_blocks_until_a_command_or_the_timeout():
    controls = Controls()
    started = time.monotonic()
    assert controls.wait(0.2) is None
    assert 0.15 <= time.monotonic() - started < 2
    timer = threading.Timer(0.1, controls.resume)
    timer.start()
    started = time.monotonic()
    assert controls.wait(10) == Resume()
    assert time.monotonic() - started < 5
    timer.join()


def test_many_threads_can_send_at_once():
    controls = Controls()
    threads = [threading.Thread(target=lambda: [controls.save() for _ in range(250)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert controls.has_pending()
    assert len(controls.drain()) == 1000 and not controls.has_pending()
