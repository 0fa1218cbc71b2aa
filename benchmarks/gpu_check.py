"""On one GPU, in under 4 minutes: the CUDA paths tested elsewhere with fakes only, for real, in one JSON summary
on stdout (progress on stderr).

1. gpu_tests: every test marked gpu (pytest -m gpu).
2. presets: a headless run of each in-memory preset on cuda: it finishes on the GPU; its steady steps/s.
3. torchrun_nccl: torchrun with one process on the GPU (world size 1): the headless command under torchrun, and
   an nccl all_reduce (a world of one trains without a process group, so the engine alone would not reach nccl).
4. torchrun_gloo: torchrun with two processes and the GPU hidden (two ranks cannot share one GPU under nccl):
   gloo, and the sharded world the engine trains in.
5. device_panel (run first): the device panel's figures (engine.devices.DeviceMonitor) against
   torch.cuda.mem_get_info, torch.cuda's own counters and NVML, with 256 MiB allocated.
6. overhead (run last: it compiles, and takes what the budget has left): benchmarks/overhead.py on cuda, the large
   workload (tutorial, hand-written, headless), then the headless variants fp32 and bf16, eager and compiled.

Each check has a time limit within the budget; one the budget no longer fits is reported as skipped. Without
a CUDA device nothing runs: the summary says {"skipped": "no CUDA device"} and lists the commands it would run.
Exit status: 0 when every check that ran passed (or none could run), 1 otherwise.
Run: python benchmarks/gpu_check.py [--budget-s 235] [--only gpu_tests,presets,...]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent
sys.path.insert(0, str(BENCHMARKS))
sys.path.insert(0, str(ROOT))

from command_figures import headless_args, in_memory_presets, steady_steps_per_s, timed_command  # noqa: E402

BUDGET_S = 235.0
"""Under 4 minutes, with a few seconds for this script's own start and the summary."""
MIN_STEP_S = 5.0
"""A check that would get less than this of the budget is skipped."""
DEVICE = "cuda"
TORCHRUN_PRESET = "digits-mlp"

NCCL_PROBE = """\
import os, torch, torch.distributed as dist
rank = int(os.environ["LOCAL_RANK"])
torch.cuda.set_device(rank)
dist.init_process_group("nccl")
value = torch.ones(4, device=f"cuda:{rank}")
dist.all_reduce(value)
torch.cuda.synchronize()
assert value.tolist() == [float(dist.get_world_size())] * 4, value
print("nccl all_reduce ok", dist.get_world_size(), torch.cuda.nccl.version())
dist.destroy_process_group()
"""

DEVICE_PANEL = """\
import json, torch
from tui_trainer.engine.devices import DeviceMonitor, cuda_memory_figures
block = torch.empty(256 << 20, dtype=torch.uint8, device="cuda:0")
torch.cuda.synchronize()
(sample,) = DeviceMonitor("cuda:0").sample()
(engine,) = cuda_memory_figures("cuda:0")
free, total = torch.cuda.mem_get_info(0)
import pynvml
pynvml.nvmlInit()
handle = pynvml.nvmlDeviceGetHandleByIndex(0)
nvml = pynvml.nvmlDeviceGetMemoryInfo(handle)
used = sample.memory_used_all_processes_bytes
mib = 1 << 20
checks = {
    "total_is_mem_get_info_total": sample.memory_total_bytes is not None
        and abs(sample.memory_total_bytes - total) <= 0.01 * total,
    "total_is_nvml_total": sample.memory_total_bytes is not None
        and abs(sample.memory_total_bytes - nvml.total) <= 0.01 * nvml.total,
    "allocated_is_torch_memory_allocated": sample.memory_allocated_bytes == torch.cuda.memory_allocated(0)
        and sample.memory_allocated_bytes >= 256 * mib,
    "reserved_is_torch_memory_reserved": sample.memory_reserved_bytes == torch.cuda.memory_reserved(0),
    "engine_figures_are_torch_counters": engine["allocated_bytes"] == torch.cuda.memory_allocated(0)
        and engine["total_bytes"] == sample.memory_total_bytes,
    "used_is_nvml_used": used is not None and abs(used - nvml.used) <= 64 * mib,
    "used_is_total_less_free": used is not None and abs(used - (total - free)) <= max(0.02 * total, 512 * mib),
    "utilization_is_a_percentage": sample.utilization_percent is not None and 0 <= sample.utilization_percent <= 100,
    "temperature_is_plausible": sample.temperature_c is not None and 0 < sample.temperature_c < 120,
}
print(json.dumps({"checks": checks, "sample": sample.to_dict(), "engine": engine,
                  "mem_get_info": {"free_bytes": free, "total_bytes": total},
                  "nvml": {"used_bytes": nvml.used, "total_bytes": nvml.total, "free_bytes": nvml.free}}))
"""


@dataclass(frozen=True)
class Command:
    """One process a check runs: its args, an environment added to this one's, and its share of the check's
    time."""

    args: list[str]
    env: dict[str, str]
    share: float = 1.0


@dataclass(frozen=True)
class Check:
    name: str
    expected_s: float
    """About how long it takes on one GPU of a 16-core machine: what the checks before it leave for it."""
    limit_s: float
    """The most it may take."""
    commands: list[Command]
    judge: Callable[[list[subprocess.CompletedProcess[str]], Path], dict[str, Any]]
    """How the check went, from its processes' results (all of them ran, each exited 0): {"ok": ...}."""


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def torchrun(processes: int, *target: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
            "--master-port", str(free_port()), *target]


def events(stdout: str) -> list[dict[str, Any]]:
    found = []
    for line in stdout.splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


def run_outcome(stdout: str) -> dict[str, Any]:
    """What a --json headless run says of itself: where it trained, how it ended."""
    seen = events(stdout)
    started = next((event for event in seen if event.get("type") == "run_started"), {})
    finished = next((event for event in reversed(seen) if event.get("type") == "run_finished"), {})
    return {"device": started.get("device"), "world_size": started.get("world_size"),
            "state": finished.get("state"), "step": finished.get("step"), "elapsed_s": finished.get("elapsed_s")}


# ---------------------------------------------------------------- the checks


def plan(folder: Path, presets: list[str] | None = None) -> list[Check]:
    """Every check, in the order they run, with the commands each runs (folder: where they write). The overhead
    benchmark goes last: it compiles, and takes what the budget has left."""
    checkpoints = folder / "checkpoints"
    presets = in_memory_presets() if presets is None else presets
    overhead = [sys.executable, str(BENCHMARKS / "overhead.py"), "--device", DEVICE, "--no-app", "--presets", "",
                "--repeats", "1"]
    return [
        Check("device_panel", 10, 30, [Command([sys.executable, "-c", DEVICE_PANEL], {})], _judge_panel),
        Check("gpu_tests", 35, 80, [Command([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p",
                                             "no:cacheprovider", str(ROOT / "tests")], {})], _judge_tests),
        Check("presets", 40, 70, [Command(timed_command([*headless_args(name, checkpoints, DEVICE), "--json"],
                                                        folder / f"{name}-epochs.json"), {}) for name in presets],
              lambda done, folder: _judge_presets(done, folder, presets)),
        Check("torchrun_nccl", 20, 45, [
            Command(torchrun(1, "-m", "tui_trainer", "--headless", "--json", "--preset", TORCHRUN_PRESET,
                             "--epochs", "2", "--device", DEVICE, "--checkpoint-dir", str(checkpoints)), {}, 0.6),
            Command(torchrun(1, str(folder / "nccl_probe.py")), {}, 0.4)], _judge_nccl),
        Check("torchrun_gloo", 20, 60, [Command(torchrun(2, "-m", "tui_trainer", "--headless", "--json", "--preset",
                                                         TORCHRUN_PRESET, "--epochs", "2", "--batch-size", "32",
                                                         "--checkpoint-dir", str(checkpoints)),
                                                {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"})], _judge_gloo),
        Check("overhead", 90, 150, [Command([*overhead, "--workloads", "large"], {}, 0.25),
                                    Command([*overhead, "--workloads", "", "--variants"], {}, 0.75)], _judge_overhead),
    ]


def _judge_tests(done: list[subprocess.CompletedProcess[str]], folder: Path) -> dict[str, Any]:
    summary = next((line for line in reversed(done[0].stdout.splitlines()) if " in " in line), "")
    return {"ok": "passed" in summary and "failed" not in summary and "error" not in summary, "summary": summary}


def _judge_presets(done: list[subprocess.CompletedProcess[str]], folder: Path, presets: list[str]) -> dict[str, Any]:
    runs = {}
    for name, process in zip(presets, done, strict=True):
        outcome = run_outcome(process.stdout)
        try:
            timing = json.loads((folder / f"{name}-epochs.json").read_text())
            outcome["steady_steps_per_s"] = steady_steps_per_s(timing["epoch_train_s"], timing["epoch_steps"])
        except (OSError, ValueError, KeyError):
            outcome["steady_steps_per_s"] = None
        outcome["ok"] = outcome["state"] == "finished" and str(outcome["device"]).startswith("cuda")
        runs[name] = outcome
    return {"ok": all(run["ok"] for run in runs.values()), "runs": runs}


def _judge_overhead(done: list[subprocess.CompletedProcess[str]], folder: Path) -> dict[str, Any]:
    workloads, variants = (json.loads(process.stdout[process.stdout.index("{"):]) for process in done)
    large = workloads.get("large", {})
    return {"ok": bool(large) and bool(variants.get("variants")), "ratios": large.get("ratios"),
            "median_steps_per_s": large.get("median_steps_per_s"),
            "variants_vs_fp32": variants.get("variants", {}).get("vs_fp32"),
            "variants_median": variants.get("variants", {}).get("median")}


def _judge_nccl(done: list[subprocess.CompletedProcess[str]], folder: Path) -> dict[str, Any]:
    run = run_outcome(done[0].stdout)
    probe = next((line for line in done[1].stdout.splitlines() if line.startswith("nccl all_reduce ok")), "")
    return {"ok": run["state"] == "finished" and str(run["device"]).startswith("cuda") and bool(probe),
            "run": run, "probe": probe}


def _judge_gloo(done: list[subprocess.CompletedProcess[str]], folder: Path) -> dict[str, Any]:
    run = run_outcome(done[0].stdout)
    return {"ok": run["state"] == "finished" and run["world_size"] == 2 and run["device"] == "cpu", "run": run}


def _judge_panel(done: list[subprocess.CompletedProcess[str]], folder: Path) -> dict[str, Any]:
    figures = json.loads(done[0].stdout.strip().splitlines()[-1])
    return {"ok": all(figures["checks"].values()), **figures}


# ---------------------------------------------------------------- running them


def run_check(check: Check, folder: Path, seconds: float, log: Callable[[str], None]) -> dict[str, Any]:
    """Run the check's commands in turn, each within its share of what is left of `seconds`; then judge them."""
    started = time.monotonic()
    done: list[subprocess.CompletedProcess[str]] = []
    for index, command in enumerate(check.commands):
        left = seconds - (time.monotonic() - started)
        timeout = max(MIN_STEP_S, left * command.share / sum(each.share for each in check.commands[index:]))
        try:
            process = subprocess.run(command.args, capture_output=True, text=True, cwd=folder, timeout=timeout,
                                     env={**os.environ, "PYTHONPATH": str(ROOT), **command.env},
                                     stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired as error:
            output = error.stdout.decode(errors="replace") if isinstance(error.stdout, bytes) else error.stdout or ""
            return {"ok": False, "seconds": time.monotonic() - started, "error": f"timed out after {timeout:.0f} s",
                    "command": command.args, "output_tail": output[-1500:]}
        if process.returncode != 0:
            return {"ok": False, "seconds": time.monotonic() - started, "error": f"exit status {process.returncode}",
                    "command": command.args, "output_tail": (process.stdout + process.stderr)[-1500:]}
        done.append(process)
        log(f"  {check.name}: {shown(command)[:100]} ... done at {time.monotonic() - started:.1f} s")
    try:
        result = check.judge(done, folder)
    except Exception as error:  # an output that is not what the check expects
        result = {"ok": False, "error": f"{type(error).__name__}: {error}",
                  "output_tail": (done[-1].stdout + done[-1].stderr)[-1500:] if done else ""}
    return {**result, "seconds": time.monotonic() - started}


def time_for(checks: list[Check], index: int, left_s: float) -> float:
    """What check `index` may take of the left_s seconds of the budget: its limit, less what the checks after it
    are expected to need."""
    return min(checks[index].limit_s, left_s - sum(check.expected_s for check in checks[index + 1:]))


def cuda_device() -> str | None:
    """The GPU's name, or None without a CUDA device."""
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def shown(command: Command) -> str:
    """A command as a shell line, a `python -c` script by its first line."""
    args = list(command.args)
    if "-c" in args[:3]:
        at = args.index("-c") + 1
        args[at] = f"<script: {args[at].splitlines()[0]} ...>"
    env = " ".join(f"{key}={shlex.quote(value)}" for key, value in command.env.items())
    return f"{env} {shlex.join(args)}".strip()


def summary_without_gpu(checks: list[Check]) -> dict[str, Any]:
    """What would run, and that none of it did."""
    return {"skipped": "no CUDA device", "ok": None,
            "checks": {check.name: {"skipped": "no CUDA device", "expected_s": check.expected_s,
                                    "limit_s": check.limit_s, "commands": [shown(each) for each in check.commands]}
                       for check in checks}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-s", type=float, default=BUDGET_S, help="all checks together (default 235)")
    parser.add_argument("--only", default="", help="these checks alone, by name (default: all)")
    args = parser.parse_args(argv)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as temp:
        folder = Path(temp)
        checks = plan(folder)
        if args.only:
            wanted = set(args.only.split(","))
            checks = [check for check in checks if check.name in wanted]
        name = cuda_device()
        if name is None:
            print(json.dumps(summary_without_gpu(checks), indent=2))
            return 0
        (folder / "nccl_probe.py").write_text(NCCL_PROBE)
        results: dict[str, Any] = {}
        for index, check in enumerate(checks):
            left = args.budget_s - (time.monotonic() - started)
            seconds = time_for(checks, index, left)
            if seconds < MIN_STEP_S:
                results[check.name] = {"skipped": f"out of time ({left:.0f} s of the budget left)"}
                continue
            log(f"{check.name}: up to {seconds:.0f} s")
            results[check.name] = run_check(check, folder, seconds, log)
        ran = [result for result in results.values() if "skipped" not in result]
        summary = {"ok": bool(ran) and all(result["ok"] for result in ran), "device": name,
                   "budget_s": args.budget_s, "elapsed_s": time.monotonic() - started, "checks": results}
    print(json.dumps(summary, indent=2, default=str))
    return 0 if summary["ok"] or not ran else 1


if __name__ == "__main__":
    sys.exit(main())
