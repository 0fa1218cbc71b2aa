"""Memory of the metrics layer as a run grows: the process's RSS after 1e6 and 1e7 logged steps.

Synthetic progress records (one per step, the worst case: logging.every_steps=1) are fed to what a long
run keeps in memory: the chart series (engine.metrics.Series: loss, accuracy, learning rate) and the
trainer's run history (engine.trainer.RunHistory, saved in checkpoints).
Run: python benchmarks/memory.py [--steps 1000000,10000000]
"""

from __future__ import annotations

import argparse
import gc
import math
import time

import psutil
from common import report

from tui_trainer.engine.trainer import RunHistory
from tui_trainer.ui.series import Series


def rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", default="1000000,10000000")
    args = parser.parse_args()
    checkpoints = sorted(int(float(value)) for value in args.steps.split(","))

    baseline = rss_mb()
    series = {name: Series() for name in ("train_loss", "train_accuracy", "lr")}
    history = RunHistory()
    results, table = {"baseline_rss_mb": baseline}, [("logged steps", "RSS MB", "growth MB", "s to feed")]
    step, start = 0, time.perf_counter()
    for target in checkpoints:
        while step < target:
            step += 1
            loss = 2.0 * math.exp(-step / 2e6) + 0.01 * math.sin(step)
            series["train_loss"].append(step, loss)
            series["train_accuracy"].append(step, 1 - loss / 3)
            series["lr"].append(step, 1e-3)
            history.add({"type": "progress", "step": step, "train_loss": loss, "train_accuracy": 1 - loss / 3,
                         "lr": 1e-3})
        rss = rss_mb()
        results[f"rss_mb_at_{target}"] = rss
        table.append((f"{target:,}", f"{rss:.1f}", f"{rss - baseline:.1f}", f"{time.perf_counter() - start:.1f}"))
    first, last = checkpoints[0], checkpoints[-1]
    results["growth_mb_first_to_last"] = results[f"rss_mb_at_{last}"] - results[f"rss_mb_at_{first}"]
    results["history_records"] = len(history.records)
    results["series_points_kept"] = {name: len(s.view(10**9)[0]) for name, s in series.items()}
    table.append((f"growth {first:,} -> {last:,}", f"{results['growth_mb_first_to_last']:.1f}", "", ""))
    report("memory: RSS as the logged steps grow", results, table)


if __name__ == "__main__":
    main()
