"""What a checkpoint save costs: tui-trainer's save against a careful hand-written one, interleaved, median of N.

(a) hand-written: torch.save to a temporary file beside the target, flush, fsync, rename over the target,
    fsync the folder (what "atomic" takes; without the fsync a crash can leave an empty file).
(b) tui-trainer: engine.checkpoints.save_checkpoint, the same steps, with what is written sent on to the disk
    every 8 MB while the rest is serialized (WriteBehind), so the final fsync waits for the tail only.
Each size is one state_dict of 4 MB float32 tensors, like a model's weights with its optimizer state; each
save goes to a new file on the disk of the current folder (where ./checkpoints is), as a run's saves do.
Run: python benchmarks/checkpoint.py [--repeats 7] [--sizes-mb 1,30,120]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from common import interleave, median, paired_ratio, report

from tui_trainer.engine.checkpoints import save_checkpoint

TENSOR_BYTES = 4 << 20


def hand_written_save(path: Path, payload: dict) -> None:
    temp = path.with_name(f".tmp-{path.name}")
    with open(temp, "wb") as file:
        torch.save(payload, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temp, path)
    descriptor = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def timed_saves(save, payload: dict, folder: Path) -> float:
    """One save to a new file, as saves per second (interleave's runners return a rate)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"last-{time.monotonic_ns()}.pt"
    start = time.perf_counter()
    save(path, payload)
    elapsed = time.perf_counter() - start
    path.unlink()
    return 1 / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sizes-mb", default="1,30,120")
    args = parser.parse_args()
    results, table = {}, [("size MB", "a hand-written ms", "b tui-trainer ms", "b/a time", "b/a paired")]
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as temp:
        folder = Path(temp)
        for size_mb in (int(value) for value in args.sizes_mb.split(",")):
            count = max(1, size_mb * (1 << 20) // TENSOR_BYTES)
            numel = min(TENSOR_BYTES, size_mb * (1 << 20)) // 4
            payload = {"model": {f"layer{index}.weight": torch.randn(numel) for index in range(count)}}
            runs = interleave({"a_hand_written": lambda payload=payload: timed_saves(hand_written_save, payload,
                                                                                      folder / "a"),
                               "b_tui_trainer": lambda payload=payload: timed_saves(save_checkpoint, payload,
                                                                                     folder / "b")},
                              args.repeats)
            hand_ms = 1000 / median(runs["a_hand_written"])
            ours_ms = 1000 / median(runs["b_tui_trainer"])
            paired = 1 / paired_ratio(runs, "b_tui_trainer", "a_hand_written")
            results[f"{size_mb}MB"] = {"ms_hand_written": hand_ms, "ms_tui_trainer": ours_ms,
                                       "time_ratio": ours_ms / hand_ms, "time_ratio_paired": paired}
            table.append((str(size_mb), f"{hand_ms:.1f}", f"{ours_ms:.1f}", f"{ours_ms / hand_ms:.3f}",
                          f"{paired:.3f}"))
    report("checkpoint: milliseconds per atomic save (fsync included), median", results, table)


if __name__ == "__main__":
    main()
