"""Busy CPUs: steps/s of the ~1 ms and ~20 ms workloads (common.WORKLOADS) when other work shares the CPUs.

Runners, each in a Python process of its own that stays up for the whole benchmark (torch imported once; the
threads a process starts with are its own):
  tutorial       overhead.tutorial_loop with torch's default threads, as a user's script runs;
  headless       overhead.headless_run (the headless command's RunHost path) as shipped: threads sized by
                 runs.cpu_share;
  before         the same headless path with torch's default threads (the code before runs.cpu_share: only a
                 run in the app's thread sized its threads);
  (--variants)   passive: threads sized and OMP_WAIT_POLICY=PASSIVE (idle OpenMP threads sleep at once);
                 passive_only: torch's default threads with OMP_WAIT_POLICY=PASSIVE.
Conditions:
  quiet          nothing else of ours running;
  busy           beside one CPU-bound process pinned to the first CPU this process may use;
  one_cpu        the runner's process limited to one CPU (affinity; its own process, started so).
Each round runs every runner under every condition, one after another (drift on a noisy machine hits all alike);
ratios are medians of the ratios within each round. A measured run is a few epochs after an untimed one.

Targets: busy headless >= 3x busy tutorial, and busy headless >= 0.7x quiet headless at the small step; quiet
headless no worse than quiet before.
Run: python benchmarks/contention.py [--quick] [--repeats N] [--workloads small,large] [--variants]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common import median, paired_ratio, report, workload_config

HERE = Path(__file__).resolve().parent
RUNNERS = {
    # name: (uses tui-trainer's thread sizing, OMP_WAIT_POLICY in its environment, what it runs)
    "tutorial": (False, None, "tutorial_loop"),
    "headless": (True, None, "headless_run"),
    "before": (False, None, "headless_run"),
    "passive": (True, "PASSIVE", "headless_run"),
    "passive_only": (False, "PASSIVE", "headless_run"),
}
VARIANTS = ("passive", "passive_only")
CONDITIONS = ("quiet", "busy", "one_cpu")
SIZES = {
    # workload: (generated samples, epochs measured) per mode; 80% of the samples train, 128 a batch. Small on
    # purpose: torch's default threads beside a busy CPU ran the small step 10-30x slower here.
    "quick": {"small": (20000, 2), "large": (3200, 1)},
    "full": {"small": (20000, 6), "large": (6400, 1)},
}
ONE_THREAD_ALIKE = ("passive", "passive_only")
"""Runners that differ from another only in OpenMP's wait policy, which a process of one CPU (one thread)
does not use: not run under one_cpu."""


# ---------------------------------------------------------------- the worker: one runner in its own process


def _leave_threads_alone() -> None:
    """The host as it was before runs.cpu_share: torch's threads as torch starts them."""
    import torch

    from tui_trainer.runs import cpu_share

    def unchanged(sample: Any, **_: Any) -> cpu_share.ThreadChoice:
        return cpu_share.ThreadChoice(torch.get_num_threads(), torch.get_num_interop_threads(),
                                      cpus=os.cpu_count() or 1, set_by="torch's default")

    cpu_share.size_threads = unchanged


def worker(runner: str, sizing: bool) -> None:
    """Serve requests on stdin (one JSON config a line), answer steps/s and torch's threads on stdout."""
    sys.path.insert(0, str(HERE))
    import overhead
    import torch

    from tui_trainer.config import config_from_dict

    if not sizing:
        _leave_threads_alone()
    run = getattr(overhead, runner)
    folder = Path(tempfile.mkdtemp(prefix="contention-"))
    for line in sys.stdin:
        config = config_from_dict(json.loads(line))
        rate = run(config, folder) if runner == "headless_run" else run(config)
        print(json.dumps({"steps_per_s": rate, "threads": torch.get_num_threads()}), flush=True)


# ---------------------------------------------------------------- the parent: conditions, rounds, ratios


class Runner:
    """A worker process for one runner under one affinity."""

    def __init__(self, name: str, cpus: set[int] | None) -> None:
        sizing, wait_policy, function = RUNNERS[name]
        env = {key: value for key, value in os.environ.items() if key not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
        env["PYTHONPATH"] = str(HERE.parent)
        if wait_policy:
            env["OMP_WAIT_POLICY"] = wait_policy
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", function, *(["--sizing"] if sizing else [])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)

    def measure(self, config: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(config) + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise RuntimeError(f"a worker ended (exit status {self.process.wait()})")
        return json.loads(answer)

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


@contextlib.contextmanager
def busy_cpu(cpu: int) -> Iterator[None]:
    """One CPU-bound process pinned to cpu, for as long as the block lasts (given a moment to get going)."""
    process = subprocess.Popen([sys.executable, "-c", "while True: pass"],
                               preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
    time.sleep(0.3)
    try:
        yield
    finally:
        process.kill()
        process.wait()


def sized_config(name: str, folder: Path, samples: int, epochs: int) -> dict[str, Any]:
    raw = workload_config(name, str(folder / "checkpoints"), epochs=epochs).to_dict()
    raw["data"]["options"]["samples"] = samples
    return raw


def condition_ratios(runs: dict[str, list[float]]) -> dict[str, float]:
    """Each runner against the others under the same condition, and against itself when quiet."""
    ratios: dict[str, float] = {}
    for condition in CONDITIONS:
        for top, bottom in (("headless", "tutorial"), ("before", "tutorial"), ("headless", "before"),
                            ("passive", "headless"), ("passive_only", "before")):
            if f"{top}/{condition}" in runs and f"{bottom}/{condition}" in runs:
                ratios[f"{top}/{bottom} {condition}"] = paired_ratio(runs, f"{top}/{condition}",
                                                                     f"{bottom}/{condition}")
        for runner in RUNNERS:
            if f"{runner}/{condition}" in runs and condition != "quiet":
                ratios[f"{runner} {condition}/quiet"] = paired_ratio(runs, f"{runner}/{condition}", f"{runner}/quiet")
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter runs, 2 rounds: about 3 minutes here")
    parser.add_argument("--repeats", type=int, default=None, help="rounds (default 5; 2 with --quick)")
    parser.add_argument("--workloads", default="small,large")
    parser.add_argument("--variants", action="store_true", help="also OMP_WAIT_POLICY=PASSIVE, with and without "
                                                                   "the sizing")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--sizing", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.sizing)
        return
    repeats = args.repeats or (2 if args.quick else 5)
    sizes = SIZES["quick" if args.quick else "full"]
    workloads = [name for name in args.workloads.split(",") if name]
    names = [name for name in RUNNERS if name not in VARIANTS or args.variants]
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        sys.exit("contention: needs at least 2 CPUs (one to keep busy)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        configs = {name: sized_config(name, folder, *sizes[name]) for name in workloads}
        warm_up = {name: sized_config(name, folder, sizes[name][0], 1) for name in workloads}
        runners = {(name, place): Runner(name, {allowed[-1]} if place == "one_cpu" else None)
                   for name in names for place in ("all", "one_cpu")
                   if place == "all" or name not in ONE_THREAD_ALIKE}
        runs: dict[str, dict[str, list[float]]] = {name: {} for name in workloads}
        threads: dict[str, int] = {}
        try:
            for runner in runners.values():
                for name in workloads:
                    runner.measure(warm_up[name])
            for round_index in range(repeats):
                for name in workloads:
                    for condition in CONDITIONS:
                        for runner_name in names:
                            runner = runners.get((runner_name, "one_cpu" if condition == "one_cpu" else "all"))
                            if runner is None:
                                continue
                            with busy_cpu(allowed[0]) if condition == "busy" else contextlib.nullcontext():
                                answer = runner.measure(configs[name])
                            key = f"{runner_name}/{condition}"
                            runs[name].setdefault(key, []).append(answer["steps_per_s"])
                            threads[f"{name}/{key}"] = answer["threads"]
                            print(f"  round {round_index + 1}/{repeats} {name} {key}: {answer['steps_per_s']:.1f} "
                                  f"steps/s, {answer['threads']} threads", file=sys.stderr)
        finally:
            for runner in runners.values():
                runner.close()
    results: dict[str, Any] = {"repeats": repeats, "quick": args.quick, "cpus": len(allowed),
                               "torch_threads": threads, "seconds": round(time.monotonic() - started, 1)}
    table = [("workload", "condition", *names, "headless/tutorial", "headless/before", "headless/quiet",
              "before/tutorial")]
    for name in workloads:
        by_run = runs[name]
        medians = {key: median(values) for key, values in by_run.items()}
        ratios = condition_ratios(by_run)
        for condition in CONDITIONS:
            table.append((name, condition, *(f"{medians[f'{runner}/{condition}']:.1f}" if f"{runner}/{condition}"
                                             in medians else "-" for runner in names),
                          *(f"{ratios[key]:.2f}" if key in ratios else "-" for key in (
                              f"headless/tutorial {condition}", f"headless/before {condition}",
                              f"headless {condition}/quiet", f"before/tutorial {condition}"))))
        results[name] = {"steps_per_s": by_run, "median_steps_per_s": medians, "ratios": ratios,
                         "ms_per_step_headless_quiet": 1000 / medians["headless/quiet"]}
    results["targets"] = {
        "busy headless/tutorial >= 3": {name: results[name]["ratios"]["headless/tutorial busy"] for name in workloads},
        "busy headless/quiet >= 0.7 (small)": results.get("small", {}).get("ratios", {}).get("headless busy/quiet"),
        "quiet headless/before ~ 1": {name: results[name]["ratios"]["headless/before quiet"] for name in workloads},
    }
    report("contention: steps/s (median) and ratios (median within rounds)", results, table)


if __name__ == "__main__":
    main()
