"""The wire format of a detached run's control socket: one JSON object per line, both ways.

Server to client: first a `hello` (how many metric records the run has written to metrics.jsonl so far,
the RunStarted event without its history, the current state), then every engine event as it happens.
Client to server: commands (engine.controls), e.g. {"type": "pause"}, and the owner's `ready` and `release`.
Each side reads lines of bounded length; a line that is not a valid message is refused with an `error` line
to its sender (server) or skipped (client), never trusted.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RECORD_KINDS = ("progress", "epoch_ended", "hyperparameters_changed")
"""Events the trainer also appends to metrics.jsonl, one line each."""
ERROR = "error"
"""Server to client: {"type": "error", "message": "..."}: a command refused (the run goes on), or a connection
refused (before any hello)."""
MAX_LINE_BYTES = 16 * 1024 * 1024
"""The longest line a client reads from a server (a hello holds the run's config)."""
MAX_COMMAND_BYTES = 64 * 1024
"""The longest line a server reads from a client: commands are small."""
RECV_BYTES = 65536
UNIX_PATH_MAX = 100


def encode(message: dict[str, Any]) -> bytes:
    return (json.dumps(message, allow_nan=True) + "\n").encode()


def error_line(message: str) -> bytes:
    return encode({"type": ERROR, "message": message})


@dataclass(frozen=True)
class BadLine:
    """A line that is no message: why (one line)."""

    problem: str


def _raw_lines(sock: socket.socket, max_line_bytes: int) -> Iterator[bytes | None]:
    """The lines from a socket until it closes (without the newline); None for a line longer than
    max_line_bytes, which is skipped without being held in memory."""
    buffer = bytearray()
    skipping = False
    while True:
        try:
            chunk = sock.recv(RECV_BYTES)
        except OSError:
            return
        if not chunk:
            return
        start, searched = 0, len(buffer)  # only the new bytes can hold a newline not seen yet
        buffer += chunk
        while (end := buffer.find(b"\n", searched)) >= 0:
            line = bytes(buffer[start:end])
            start = searched = end + 1
            if skipping or len(line) > max_line_bytes:
                skipping = False
                yield None
            else:
                yield line
        del buffer[:start]
        if len(buffer) > max_line_bytes:
            buffer.clear()
            skipping = True


def parse_line(line: bytes) -> dict[str, Any] | BadLine:
    try:
        message = json.loads(line)
    except RecursionError:
        return BadLine("the message is nested too deeply")
    except ValueError:  # not JSON, not UTF-8, or a number too long
        return BadLine("the line is not valid JSON")
    if not isinstance(message, dict):
        return BadLine(f"a message is a JSON object; given {type(message).__name__}")
    return message


def read_messages(sock: socket.socket, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[dict[str, Any] | BadLine]:
    """Messages from a socket until it closes; a line that is none says why as a BadLine."""
    for line in _raw_lines(sock, max_line_bytes):
        if line is None:
            yield BadLine(f"the line is longer than {max_line_bytes} bytes")
        elif line.strip():
            yield parse_line(line)


def read_lines(sock: socket.socket, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[dict[str, Any]]:
    """Messages from a socket until it closes; a malformed line is skipped."""
    for message in read_messages(sock, max_line_bytes):
        if not isinstance(message, BadLine):
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
