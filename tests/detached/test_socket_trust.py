"""The control socket treats what it reads as data: a bad command is answered to its sender and ignored (the
run goes on), a client cannot cost unbounded threads or memory, and a client survives a malformed server."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tui_trainer.detached import server as server_module
from tui_trainer.detached.client import RunClient, RunUnavailable
from tui_trainer.detached.protocol import MAX_COMMAND_BYTES, encode, read_lines, short_path
from tui_trainer.detached.server import MAX_CLIENTS, ControlServer, EventHub
from tui_trainer.engine.controls import Controls, Pause, Save, SetHyperparameters
from tui_trainer.engine.events import Progress, RunFinished, StateChanged, Warning
from tui_trainer.runs.registry import RunInfo

WAIT_S = 10


class Connection:
    """A raw client: lines out, messages in."""

    def __init__(self, path: Path, read_hello: bool = True) -> None:
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.socket.settimeout(WAIT_S)
        with short_path(path) as address:
            self.socket.connect(address)
        self.messages = read_lines(self.socket)
        self.hello = next(self.messages) if read_hello else None

    def send(self, data: bytes) -> None:
        self.socket.sendall(data if data.endswith(b"\n") else data + b"\n")

    def next(self) -> dict:
        return next(self.messages)

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ControlServer, EventHub, Controls]]:
    controls, hub = Controls(), EventHub()
    server = ControlServer(tmp_path, hub, controls)
    yield server, hub, controls
    server.close()
    hub.close(flush_timeout_s=0.5)


@pytest.fixture
def thread_errors(monkeypatch) -> list:
    """Exceptions that ended a thread (a reader killed by a message would land here)."""
    errors: list = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    return errors


def wait_for(condition, what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# ---------------------------------------------------------------- bad commands


BAD_LINES = [
    (b'{"type": "save", "path": 5}', "save.path"),
    (b'{"type": "set_hyperparameters", "lr": "abc"}', "set_hyperparameters.lr"),
    (b'{"type": "set_hyperparameters", "weight_decay": 1e308}', "allowed: a number >= 0 and <= 10"),
    (b'{"type": "set_hyperparameters", "lr": 1000}', "allowed: a number > 0 and <= 100"),
    (b'{"type": "set_hyperparameters", "lr": NaN}', "finite"),
    (b'{"type": "set_hyperparameters", "momentum": -Infinity}', "finite"),
    (b'{"type": "set_hyperparameters", "lr": 1e999}', "finite"),
    (b'{"type": "set_hyperparameters", "lr": 1' + b"0" * 5000 + b"}", "not valid JSON"),
    (b"[" * 100_000, f"longer than {MAX_COMMAND_BYTES} bytes"),
    (b"[" * 60_000, "nested too deeply"),
    (b'{"type": "stop", "reason": ' + b"[" * 30_000 + b"]" * 30_000 + b"}", "nested too deeply"),
    (b'{"a": ' * 5_000 + b"1" + b"}" * 5_000, "nested too deeply"),
    (b'{"type": "pause", "x": 1}', "unknown field 'x'"),
    (b'{"type": "stop", "save": "no"}', "stop.save"),
    (b'{"type": "stop", "reason": "' + b"r" * 50_000 + b'"}', "stop.reason"),
    (b'{"type": "format_disk"}', "unknown command type"),
    (b'{"no": "type"}', "unknown command type"),
    (b"[1, 2]", "JSON object"),
    (b'"pause"', "JSON object"),
    (b"null", "JSON object"),
    (b"not json at all", "not valid JSON"),
    (b"\xff\xfe\x00garbage", "not valid JSON"),
    (b'{"type": "pause"' + b" " * (MAX_COMMAND_BYTES + 10) + b"}", f"longer than {MAX_COMMAND_BYTES} bytes"),
    (b'{"type": "save", "path": "x/epoch-0000-mine.pt"}', "epoch-"),
    (b'{"type": "save", "path": ".tmp-mine.pt"}', "starts with '.'"),
    (b'{"type": "save", "path": "run-folder/metrics.jsonl"}', "one of the run's own files"),
    (b'{"type": "save", "path": "a\\u0000b.pt"}', "control characters"),
    (b'{"type": "save", "path": "' + b"n" * 300 + b'.pt"}', "too long"),
    (b'{"type": "release", "now": true}', "release takes no fields"),
    (b'{"type": "ready"}', "only the app that started this run"),
    (b'{"type": "release"}', "only the app that started this run"),
]


def test_each_bad_command_is_answered_to_its_sender_and_ignored(served, thread_errors):
    server, hub, controls = served
    client = Connection(server.path)
    other = Connection(server.path)
    for line, expected in BAD_LINES:
        client.send(line)
        reply = client.next()
        assert reply["type"] == "error", line[:60]
        assert expected in reply["message"] and reply["message"].startswith("refused: "), reply["message"][:300]
        assert "\n" not in reply["message"] and len(reply["message"]) < 1000
    assert controls.drain() == [], "no bad command reached the engine"
    client.send(b'{"type": "pause"}')  # the same connection still works
    wait_for(controls.has_pending, "the pause")
    assert controls.drain() == [Pause()]
    other.send(encode(SetHyperparameters(lr=0.5).to_dict()))
    wait_for(controls.has_pending, "the tweak")
    assert controls.drain() == [SetHyperparameters(lr=0.5)]
    hub.publish(StateChanged("paused"))
    assert other.next()["type"] == "state_changed", "the error lines went to their sender only"
    assert thread_errors == []


def test_a_valid_save_with_an_ordinary_name_goes_through(served, tmp_path):
    server, _, controls = served
    client = Connection(server.path)
    path = str(tmp_path / "elsewhere" / "mine.pt")
    client.send(encode(Save(path=path).to_dict()))
    client.send(encode(Save().to_dict()))
    wait_for(lambda: controls.has_pending(), "the saves")
    time.sleep(0.05)
    assert controls.drain() == [Save(path=path), Save()]


def test_only_the_owner_releases_and_readies_an_owned_run(tmp_path):
    controls, hub = Controls(), EventHub()
    released: list[bool] = []
    server = ControlServer(tmp_path, hub, controls, owned=True, on_release=lambda: released.append(True))
    try:
        owner = Connection(server.path)
        watcher = Connection(server.path)
        watcher.send(b'{"type": "release"}')
        assert "only the app that started this run" in watcher.next()["message"]
        watcher.send(b'{"type": "ready"}')
        assert "only the app that started this run" in watcher.next()["message"]
        assert server.owned and not released and not server._owner_ready.is_set()
        owner.send(b'{"type": "ready", "x": 1}')
        assert "ready takes no fields" in owner.next()["message"]
        owner.send(b'{"type": "ready"}')
        wait_for(server._owner_ready.is_set, "the owner's ready")
        owner.send(b'{"type": "release"}')
        wait_for(lambda: released == [True], "the release")
    finally:
        server.close()
        hub.close(flush_timeout_s=0.5)


# ---------------------------------------------------------------- bounds on what clients cost


def test_connections_past_the_cap_are_told_so_and_closed(served, thread_errors):
    server, hub, _ = served
    before = threading.active_count()
    attached = [Connection(server.path) for _ in range(MAX_CLIENTS)]
    assert all(connection.hello["type"] == "hello" for connection in attached)
    for _ in range(3 * MAX_CLIENTS):
        extra = Connection(server.path, read_hello=False)
        refused = extra.next()
        assert refused["type"] == "error" and f"serves {MAX_CLIENTS} connections" in refused["message"]
        assert next(extra.messages, None) is None, "closed after the one line"
        extra.close()
    assert threading.active_count() <= before + 2 * MAX_CLIENTS + 1, "two threads per client, none per refusal"
    with pytest.raises(RunUnavailable, match=f"serves {MAX_CLIENTS} connections"):
        RunClient(RunInfo(run_id="busy", run_dir=str(server.path.parent), state="running", pid=os.getpid()))

    attached.pop().close()  # a slot frees up when its client goes
    wait_for(hub.has_room, "the slot of the client that left")
    assert Connection(server.path).hello["type"] == "hello"
    hub.publish(StateChanged("running"))
    assert attached[0].next()["type"] == "state_changed"
    wait_for(lambda: threading.active_count() <= before + 2 * MAX_CLIENTS + 1, "the leaver's threads to end")
    assert thread_errors == []


def test_a_client_that_never_reads_is_dropped_with_its_queue_bounded(served, monkeypatch, caplog):
    import logging

    monkeypatch.setattr(logging.getLogger("tui_trainer"), "propagate", True)  # a file log set up earlier stops it
    limit = 256 * 1024
    monkeypatch.setattr(server_module, "OUTBOX_LIMIT_BYTES", limit)
    server, hub, _ = served
    stalled = Connection(server.path)  # reads its hello, then nothing more
    reader = Connection(server.path)
    clients = list(hub._clients)
    got: list[dict] = []
    reading = threading.Thread(target=lambda: got.extend(reader.messages), daemon=True)
    reading.start()
    event, count = Warning("w" * 1000), 3000  # 3 MB in all: more than the socket buffer and the queue
    most = 0
    for index in range(count):
        hub.publish(event)
        most = max(most, *(client.queued_bytes for client in clients))
        if index % 50 == 0:
            time.sleep(0.001)  # the pace of a fast run's events, not a tight loop
    assert most <= limit + len(encode(event.to_dict()))
    stalled_client = clients[0]
    assert stalled_client.closed.is_set(), "the client that does not read was dropped"
    assert any("fell" in record.getMessage() and "behind" in record.getMessage() for record in caplog.records)
    hub.publish(StateChanged("finished"))
    wait_for(lambda: got and got[-1].get("type") == "state_changed", "the reader's last event")
    assert len(got) == count + 1, "the client that reads got every event"
    stalled.close()


@pytest.mark.slow
def test_a_run_with_idle_and_stalled_clients_trains_to_the_end(make_config, monkeypatch):
    from tui_trainer.engine.trainer import Trainer

    monkeypatch.setattr(server_module, "OUTBOX_LIMIT_BYTES", 8 * 1024)
    controls, hub = Controls(), EventHub()
    attached: dict = {}
    events: list[dict] = []

    def attach_clients() -> None:  # once the run's folder is made, before the first step
        server = attached["server"] = ControlServer(trainer.run_dir, hub, controls)
        attached["idle"] = [Connection(server.path) for _ in range(MAX_CLIENTS - 2)]
        attached["stalled"] = Connection(server.path)
        attached["stalled_client"] = hub._clients[-1]
        attached["stalled_client"].connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        watcher = attached["watcher"] = Connection(server.path)
        threading.Thread(target=lambda: events.extend(watcher.messages), daemon=True).start()

    config = make_config("iris-linear", epochs=8, logging__every_steps=1)
    trainer = Trainer(config, hub.publish, controls=controls, before_training=attach_clients)
    try:
        finished = trainer.run()
        assert finished.state == "finished" and finished.epoch == 8
        assert all(client.queued_bytes <= 8 * 1024 + 4096 for client in hub._clients)
        assert attached["stalled_client"].closed.is_set(), "the stalled client was dropped, not waited for"
        wait_for(lambda: any(event.get("type") == RunFinished.kind for event in events), "RunFinished")
        assert sum(event.get("type") == Progress.kind for event in events) >= 8 * 7, "the watcher saw every step"
        for connection in (*attached["idle"], attached["stalled"], attached["watcher"]):
            connection.close()
    finally:
        if "server" in attached:
            attached["server"].close()
        hub.close(flush_timeout_s=0.5)


# ---------------------------------------------------------------- the client against a malformed server


STARTED = {"run_id": "fake", "run_dir": "/x", "preset": "p", "task": "classification", "device": "cpu",
           "device_name": "cpu", "model": "linear", "parameters": 10, "train_samples": 5, "val_samples": 2,
           "epochs": 1, "steps_per_epoch": 1, "total_steps": 1, "start_epoch": 1, "start_step": 0, "lr": 0.1,
           "config": {}, "history": []}
HELLO = {"type": "hello", "records": 0, "run_started": STARTED, "state": {"type": "state_changed",
                                                                            "state": "running", "reason": ""}, "pid": 1}


@contextlib.contextmanager
def fake_engine(run_dir: Path, lines: list[bytes]) -> Iterator[RunInfo]:
    """A socket in run_dir that sends lines to the one client that connects, then closes."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with short_path(run_dir / "control.sock") as address:
        listener.bind(address)
    listener.listen(1)

    def serve() -> None:
        with contextlib.suppress(OSError):
            connection, _ = listener.accept()
            with connection:
                for line in lines:
                    connection.sendall(line if line.endswith(b"\n") else line + b"\n")
                connection.shutdown(socket.SHUT_WR)
                connection.recv(1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield RunInfo(run_id="fake", run_dir=str(run_dir), state="running", pid=os.getpid())
    finally:
        listener.close()
        thread.join(WAIT_S)


def line(message) -> bytes:
    return json.dumps(message).encode()


@pytest.mark.parametrize("hello", [
    line({**HELLO, "records": "many"}),
    line({**HELLO, "records": -1}),
    line({**HELLO, "records": True}),
    line({**HELLO, "pid": "1; rm -rf ~"}),
    line({**HELLO, "run_started": "started"}),
    line({**HELLO, "run_started": {**STARTED, "epochs": "many"}}),
    line({**HELLO, "run_started": {**STARTED, "config": [1]}}),
    line({**HELLO, "state": {"state": 5}}),
    line({**HELLO, "state": {}}),
    line({k: v for k, v in HELLO.items() if k != "records"}),
], ids=range(10))
def test_a_malformed_hello_is_one_line_refusal_not_a_crash_later(tmp_path, hello):
    with fake_engine(tmp_path, [hello]) as info, pytest.raises(RunUnavailable, match="greeting is malformed"):
        RunClient(info)


@pytest.mark.parametrize("first", [b"[" * 100_000, b"[1]", b"not json", line({"type": "progress"})], ids=range(4))
def test_no_hello_at_all_is_said_so(tmp_path, first):
    with fake_engine(tmp_path, [first]) as info, pytest.raises(RunUnavailable, match="did not answer"):
        RunClient(info)


def test_events_of_the_wrong_shape_are_skipped_and_an_error_line_is_shown_as_a_warning(tmp_path):
    progress = {"type": "progress", "epoch": 1, "step": 3, "epoch_step": 3, "steps_per_epoch": 5, "total_steps": 5,
                "train_loss": 0.5, "train_accuracy": None, "lr": 0.1, "samples_per_s": 10.0, "elapsed_s": 1.0,
                "eta_s": None}
    lines = [line(HELLO),
             line({**progress, "step": "three"}),
             line({**progress, "train_loss": {"a": 1}}),
             line({"type": "warning"}),
             line({"type": "warning", "message": ["x"]}),
             line({"type": "no_such_event"}),
             line({"type": ["progress"]}),
             b"[" * 100_000,
             line({"type": "error", "message": "refused: \x1b[2Jstop.save: nope"}),
             line({"type": "error", "message": 5}),
             line(progress),
             line({**progress, "train_loss": float("nan")})]
    with fake_engine(tmp_path, lines) as info:
        client = RunClient(info)
        try:
            assert [type(event).__name__ for event in client.initial_events()] == ["RunStarted", "StateChanged"]
            events = list(client.events())
        finally:
            client.close()
    assert [type(event).__name__ for event in events] == ["Warning", "Warning", "Progress", "Progress"]
    assert events[0].message == "refused: \\x1b[2Jstop.save: nope", "shown literally"
    assert events[2].step == 3 and events[3].train_loss != events[3].train_loss  # NaN: a diverged run's loss
