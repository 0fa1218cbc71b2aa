"""The wire format of a detached run's control socket: one JSON object per line, both ways.

Server to client: first a `hello` (how many metric records the run has written to metrics.jsonl so far,
the RunStarted event without its history, the current state), then every engine event as it happens.
Client to server: commands (engine.controls), e.g. {"type": "pause"}.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RECORD_KINDS = ("progress", "epoch_ended", "hyperparameters_changed")
"""Events the trainer also appends to metrics.jsonl, one line each."""
MAX_LINE_BYTES = 16 * 1024 * 1024
UNIX_PATH_MAX = 100


def encode(message: dict[str, Any]) -> bytes:
    return (json.dumps(message, allow_nan=True) + "\n").encode()


def read_lines(sock: socket.socket) -> Iterator[dict[str, Any]]:
    """Messages from a socket until it closes; a malformed line is skipped."""
    buffer = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except OSError:
            return
        if not chunk:
            return
        buffer += chunk
        if len(buffer) > MAX_LINE_BYTES and b"\n" not in buffer:
            return
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict):
                yield message


@contextlib.contextmanager
def short_path(path: Path) -> Iterator[str]:
    """A path to the socket short enough for AF_UNIX (about 100 bytes): through /proc/self/fd on Linux
    when the real one is too long."""
    text = str(path)
    if len(text.encode()) < UNIX_PATH_MAX or not Path("/proc/self/fd").is_dir():
        yield text
        return
    descriptor = os.open(path.parent, os.O_RDONLY)
    try:
        yield f"/proc/self/fd/{descriptor}/{path.name}"
    finally:
        os.close(descriptor)
