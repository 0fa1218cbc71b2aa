"""Shared pieces of the benchmarks: the workloads, repeated interleaved runs, and the report."""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tui_trainer.config import RunConfig, config_from_dict

# Two workloads on generated spirals (16,000 training points, so an epoch is a realistic 125 steps): a step
# of about 1 ms and one of about 20 ms on a quiet 2-core CPU. Each run lasts 5-10 s (small: 40 epochs,
# large: 3), so what is measured is a dashboard kept open, not the app's first frames.
WORKLOADS: dict[str, dict[str, Any]] = {
    "small": {"hidden": [320, 320], "batch_size": 128, "epochs": 40},
    "large": {"hidden": [1792, 1792], "batch_size": 128, "epochs": 3},
}


def workload_config(name: str, checkpoint_dir: str, **extra: Any) -> RunConfig:
    spec = WORKLOADS[name]
    raw = {
        "name": f"bench-{name}",
        "task": "classification",
        "data": {"source": "spirals", "batch_size": spec["batch_size"], "options": {"samples": 20000}},
        "model": {"name": "mlp", "options": {"hidden": spec["hidden"]}},
        "loss": {"name": "cross_entropy"},
        "optimizer": {"name": "adam", "lr": 1e-3},
        "epochs": spec["epochs"],
        "device": "cpu",
        "checkpoint": {"dir": checkpoint_dir, "every_epochs": 0, "save_best": False},
        **extra,
    }
    return config_from_dict(raw, source=f"benchmark {name}")


def interleave(runners: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Run each runner once per round, round after round, so drift on a noisy machine hits all alike.
    Each runner returns steps per second."""
    results: dict[str, list[float]] = {name: [] for name in runners}
    for round_index in range(repeats):
        for name, runner in runners.items():
            results[name].append(runner())
            print(f"  round {round_index + 1}/{repeats} {name}: {results[name][-1]:.1f} steps/s", file=sys.stderr)
    return results


def median(values: list[float]) -> float:
    return statistics.median(values)


def paired_ratio(runs: dict[str, list[float]], numerator: str, denominator: str) -> float:
    """The median of the ratios within each round. The machine's speed drifts between rounds (the same loop
    ran 800 and 1,130 steps/s minutes apart here); two runs of one round share its speed."""
    return median([top / bottom for top, bottom in zip(runs[numerator], runs[denominator], strict=True)])


def print_table(title: str, table: list[tuple[str, ...]]) -> None:
    """A short table on stderr."""
    width = [max(len(row[column]) for row in table) for column in range(len(table[0]))]
    print(f"\n{title}", file=sys.stderr)
    for row in table:
        print("  " + "  ".join(cell.ljust(width[column]) for column, cell in enumerate(row)), file=sys.stderr)


def report(title: str, payload: dict[str, Any], table: list[tuple[str, ...]]) -> None:
    """A short table on stderr, the JSON object on stdout."""
    print_table(title, table)
    print(json.dumps(payload, indent=2))
