"""Start-up: `tui-trainer --help`, `tui-trainer presets`, and the app's time to its first frame.

The first frame is timed in a pseudo-terminal (120x40) from the process start to the moment the setup
screen's preset list ("Presets") has been drawn. Median of N runs each.
Run: python benchmarks/startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import pty
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from common import report

COMMAND = [sys.executable, "-m", "tui_trainer"]


def time_command(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([*COMMAND, *args], check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def time_first_frame(env: dict[str, str], marker: bytes = b"Presets", timeout_s: float = 60.0) -> float:
    leader, follower = pty.openpty()
    import fcntl
    import struct
    import termios

    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    start = time.perf_counter()
    process = subprocess.Popen([*COMMAND, "--preset", "digits-mlp"], stdin=follower, stdout=follower,
                               stderr=follower, env=env, start_new_session=True)
    os.close(follower)
    seen = b""
    elapsed = float("nan")
    try:
        deadline = start + timeout_s
        while time.perf_counter() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.05)
            if ready:
                try:
                    seen += os.read(leader, 65536)
                except OSError:
                    break
                if marker in seen:
                    elapsed = time.perf_counter() - start
                    break
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        os.close(leader)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "TERM": "xterm-256color", "XDG_CONFIG_HOME": home, "XDG_STATE_HOME": home,
               "COLUMNS": "120", "LINES": "40"}
        runs: dict[str, list[float]] = {"help_s": [], "presets_s": [], "first_frame_s": []}
        for _ in range(args.repeats):
            runs["help_s"].append(time_command(["--help"], env))
            runs["presets_s"].append(time_command(["presets"], env))
            runs["first_frame_s"].append(time_first_frame(env))
    medians = {key: statistics.median(values) for key, values in runs.items()}
    report("startup (median seconds)", {"runs": runs, "median": medians},
           [("what", "median s"), *((key, f"{value:.3f}") for key, value in medians.items())])


if __name__ == "__main__":
    main()
