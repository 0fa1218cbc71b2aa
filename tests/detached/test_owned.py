"""An owned engine (the app's own engine process) stops when its app goes away, unless released."""

from __future__ import annotations

import socket
import time

from tui_trainer.detached.protocol import encode, read_lines
from tui_trainer.detached.server import ControlServer, EventHub
from tui_trainer.engine.controls import Controls, Pause, Stop


def connect(server: ControlServer) -> socket.socket:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(server.path))
    next(read_lines(client))  # the hello
    return client


def commands_within(controls: Controls, timeout: float) -> list:
    deadline = time.monotonic() + timeout
    seen: list = []
    while time.monotonic() < deadline:
        seen += controls.drain()
        if any(isinstance(command, Stop) for command in seen):
            break
        time.sleep(0.02)
    return seen


def test_the_owner_leaving_saves_and_stops_the_run(tmp_path):
    controls = Controls()
    server = ControlServer(tmp_path, EventHub(), controls, owned=True)
    try:
        owner = connect(server)
        watcher = connect(server)
        watcher.close()  # another app attached and left: nothing happens
        assert commands_within(controls, 0.3) == []
        owner.sendall(encode({"type": "pause"}))
        owner.close()
        seen = commands_within(controls, 5)
        assert isinstance(seen[0], Pause)
        assert isinstance(seen[-1], Stop) and seen[-1].save and "went away" in seen[-1].reason
    finally:
        server.close()


def test_a_released_run_outlives_its_owner(tmp_path):
    controls = Controls()
    released = []
    server = ControlServer(tmp_path, EventHub(), controls, owned=True, on_release=lambda: released.append(True))
    try:
        owner = connect(server)
        owner.sendall(encode({"type": "release"}))
        time.sleep(0.2)
        owner.close()
        assert commands_within(controls, 0.5) == []
        assert released == [True] and not server.owned
    finally:
        server.close()


def test_an_owner_that_never_connects_stops_the_run(tmp_path):
    controls = Controls()
    server = ControlServer(tmp_path, EventHub(), controls, owned=True, owner_wait_s=0.2)
    try:
        seen = commands_within(controls, 5)
        assert isinstance(seen[-1], Stop) and seen[-1].save
    finally:
        server.close()


def test_a_detached_run_ignores_its_clients_leaving(tmp_path):
    controls = Controls()
    server = ControlServer(tmp_path, EventHub(), controls)
    try:
        connect(server).close()
        assert commands_within(controls, 0.3) == []
    finally:
        server.close()


def test_an_owner_that_dies_before_connecting_stops_the_run(tmp_path):
    import subprocess
    import sys

    owner = subprocess.Popen([sys.executable, "-c", "pass"])
    owner.wait()
    controls = Controls()
    server = ControlServer(tmp_path, EventHub(), controls, owned=True, owner_pid=owner.pid)
    try:
        seen = commands_within(controls, 5)
        assert isinstance(seen[-1], Stop) and seen[-1].save and "went away" in seen[-1].reason
    finally:
        server.close()


def test_an_owned_run_waits_for_its_app_to_show_it(tmp_path):
    import threading

    controls = Controls()
    server = ControlServer(tmp_path, EventHub(), controls, owned=True)
    waited = threading.Event()
    try:
        threading.Thread(target=lambda: (server.wait_for_owner(), waited.set()), daemon=True).start()
        owner = connect(server)
        assert not waited.wait(0.5), "connected is not enough: the app has not drawn the run yet"
        owner.sendall(encode({"type": "ready"}))
        assert waited.wait(5)
        owner.sendall(encode({"type": "release"}))
        time.sleep(0.2)
        owner.close()
    finally:
        server.close()
