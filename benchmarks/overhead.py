"""What the cockpit costs training: steps/s of the same work run several ways, interleaved, median of N.

On the workloads (benchmarks/common.py):
(a) tutorial: a DataLoader over a TensorDataset, loss.item() every step; in a Python process of its own, as a
    user's script runs (after an untimed first epoch there): the engine tunes malloc for the whole process it
    trains in (host_memory.keep_freed_memory), which a script of the user's would not have.
(b) hand-written best: the engine's tricks by hand (device-resident batches by index, losses summed on the
    device and read every 50 steps, zero_grad(set_to_none=True), the fused optimizer, malloc keeping freed
    memory: host_memory.keep_freed_memory).
(c) headless: `tui-trainer --headless --json` in this process (the same code path as the command).
(d) app: the full Textual app under App.run_test, charts and gauges updating, as a user gets it: the run
    trains in an engine process the app starts for it.
(e) with --detached: the same app attached to the run in a detached engine process (tui-trainer --detach).
(f) with --in-thread: the same app training in a thread of its own process (tui-trainer --in-thread).
Each does the same epochs of training plus a validation pass per epoch on the same data and model.

On every in-memory preset (presets whose data ships in a package or is generated; command_figures.py), against
a user's own script (tutorial_script.py), both in fresh processes: the steady per-step figure (target: headless
/ script >= 1.5) and the whole command from process start to exit (target >= 1.0), each against the script with
torch's threads as the user has them and with one thread (--tutorial-threads). --against DIR runs another
checkout's command in the same rounds (before/after); --tty prints to a pseudo-terminal.

--variants: the headless command at fp32 and bf16, eager and compiled (--device cuda on a GPU).

Run: python benchmarks/overhead.py [--repeats 5] [--workloads small,large] [--no-app] [--detached] [--in-thread]
     [--variants] [--device D] [--presets A,B] [--tutorial-threads default,1] [--against DIR] [--tty] [--quick]
--quick: the presets' figures alone, 2 rounds, the script with one thread: within 5 minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from command_figures import (
    PresetFigures,
    child_env,
    headless_args,
    in_memory_presets,
    measure,
    steady_steps_per_s,
    timed_command,
    timed_process,
)
from common import WORKLOADS, interleave, median, paired_ratio, print_table, report, workload_config

from tui_trainer.catalog.datasets import build_dataset
from tui_trainer.catalog.losses import build_loss
from tui_trainer.catalog.models import build_model
from tui_trainer.catalog.optimizers import OPTIMIZERS
from tui_trainer.config import RunConfig
from tui_trainer.engine.host_memory import keep_freed_memory
from tui_trainer.yaml_io import dump_yaml


def _device(config: RunConfig) -> torch.device:
    return torch.device("cuda" if config.device == "auto" and torch.cuda.is_available() else
                        "cpu" if config.device == "auto" else config.device)


def _prepare(config: RunConfig, fused: bool = False):
    data = build_dataset(config.data.source, config.data.options, config.data.val_split, config.seed)
    torch.manual_seed(config.seed)
    model = build_model(config.model.name, None, config.model.options, data.input_shape,
                        data.num_outputs).to(_device(config))
    spec = OPTIMIZERS[config.optimizer.name]
    hyperparameters = {key: value for key, value in config.optimizer.model_dump(exclude={"name"}).items()
                       if key in spec.hyperparameters and value is not None}
    if "betas" in hyperparameters:
        hyperparameters["betas"] = tuple(hyperparameters["betas"])
    if fused:
        hyperparameters["fused"] = True
    optimizer = getattr(torch.optim, spec.torch_class)(model.parameters(), **hyperparameters)
    loss = build_loss(config.loss.name, config.loss.options, data.num_outputs)
    return data, model, optimizer, loss


def _steps_per_epoch(size: int, batch: int) -> int:
    steps, remainder = divmod(size, batch)
    return steps + (1 if remainder > 1 else 0)


def tutorial_loop(config: RunConfig) -> float:
    from torch.utils.data import DataLoader, TensorDataset

    data, model, optimizer, loss_fn = _prepare(config)
    device = _device(config)
    classification = config.task == "classification"
    batch = config.data.batch_size
    drop_last = len(data.train[0]) % batch == 1
    loader = DataLoader(TensorDataset(*data.train), batch_size=batch, shuffle=True, drop_last=drop_last)
    val_loader = DataLoader(TensorDataset(*data.val), batch_size=batch)
    steps = 0
    start = time.perf_counter()
    for _ in range(config.epochs):
        model.train()
        running_loss, correct, seen = 0.0, 0, 0
        for inputs, targets in loader:
            inputs, targets = inputs.to(device), targets.to(device)
            optimizer.zero_grad()
            outputs = model(inputs)
            loss = loss_fn(outputs, targets)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            if classification:
                correct += (outputs.argmax(1) == targets).sum().item()
            seen += len(targets)
            steps += 1
        model.eval()
        val_loss, val_correct = 0.0, 0
        with torch.no_grad():
            for inputs, targets in val_loader:
                inputs, targets = inputs.to(device), targets.to(device)
                outputs = model(inputs)
                val_loss += loss_fn(outputs, targets).item() * len(targets)
                if classification:
                    val_correct += (outputs.argmax(1) == targets).sum().item()
    return steps / (time.perf_counter() - start)


def in_own_process(runner: str, config: RunConfig, *folder: Path) -> float:
    """This module's runner (tutorial_loop, headless_run) in a fresh interpreter (malloc as Python leaves it,
    nothing run before it), once for one untimed epoch, then timed."""
    code = ("import json, sys\n"
            f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
            "from pathlib import Path\n"
            f"from overhead import {runner} as run\n"
            "from tui_trainer.config import config_from_dict\n"
            "raw, folder = json.loads(sys.stdin.read()), [Path(arg) for arg in sys.argv[1:]]\n"
            "run(config_from_dict({**raw, 'epochs': 1}), *folder)\n"
            "print(run(config_from_dict(raw), *folder))\n")
    done = subprocess.run([sys.executable, "-c", code, *map(str, folder)], input=json.dumps(config.to_dict()),
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    if done.returncode != 0:
        raise RuntimeError(f"{runner} failed: {done.stderr[-2000:]}")
    return float(done.stdout.split()[-1])


def hand_written_loop(config: RunConfig, read_every: int = 50) -> float:
    keep_freed_memory()
    data, model, optimizer, loss_fn = _prepare(config, fused=True)
    device = _device(config)
    train_x, train_y = (tensor.to(device) for tensor in data.train)
    val_x, val_y = (tensor.to(device) for tensor in data.val)
    batch = config.data.batch_size
    steps_per_epoch = _steps_per_epoch(len(train_x), batch)
    generator = torch.Generator().manual_seed(1)
    loss_sum, correct = torch.zeros((), device=device), torch.zeros((), device=device)
    steps = 0
    start = time.perf_counter()
    for _ in range(config.epochs):
        model.train()
        order = torch.randperm(len(train_x), generator=generator).to(device)
        for index in range(steps_per_epoch):
            rows = order[index * batch:(index + 1) * batch]
            inputs, targets = train_x[rows], train_y[rows]
            outputs = model(inputs)
            loss = loss_fn(outputs, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum.add_(loss.detach(), alpha=len(targets))
            correct.add_((outputs.detach().argmax(1) == targets).sum())
            steps += 1
            if steps % read_every == 0:
                torch.stack([loss_sum, correct]).tolist()
                loss_sum.zero_()
                correct.zero_()
        torch.stack([loss_sum, correct]).tolist()
        model.eval()
        with torch.no_grad():
            sums = torch.zeros(2, device=device)
            for begin in range(0, len(val_x), 256):
                outputs = model(val_x[begin:begin + 256])
                targets = val_y[begin:begin + 256]
                sums += torch.stack([loss_fn(outputs, targets) * len(targets),
                                     (outputs.argmax(1) == targets).sum().float()])
            sums.tolist()
    return steps / (time.perf_counter() - start)


def headless_run(config: RunConfig, folder: Path) -> float:
    from tui_trainer.headless import run_headless
    from tui_trainer.launch import LaunchOptions

    preset = folder / f"{config.name}.yaml"
    preset.write_text(dump_yaml(config.to_dict()))
    out = io.StringIO()
    out.isatty = lambda: False  # type: ignore[method-assign]
    code = run_headless(LaunchOptions(preset=str(preset), json=True), out=out)
    if code != 0:
        raise RuntimeError(f"headless run failed ({code}): {out.getvalue()[-500:]}")
    finished = json.loads(out.getvalue().splitlines()[-1])
    return finished["step"] / finished["elapsed_s"]


STEADY: dict[str, list[float]] = {}
"""Steady-state steps/s of each app run (after its first seconds), by runner: see app_driver.steady_rate."""
UI_THREAD_CPU: dict[str, list[float]] = {}
"""The UI thread's share of a core during each app run, by runner."""


def app_run(config: RunConfig, folder: Path) -> float:
    import app_driver

    steps_per_s = app_driver.run_app_once(config, folder)
    UI_THREAD_CPU.setdefault(f"{config.name}/d", []).append(app_driver.LAST_STATS["ui_thread_cpu_fraction"])
    STEADY.setdefault(f"{config.name}/d", []).append(app_driver.LAST_STATS["steady_steps_per_s"])
    return steps_per_s


def in_thread_app_run(config: RunConfig, folder: Path) -> float:
    import app_driver

    steps_per_s = app_driver.run_app_once(config, folder, in_thread=True)
    UI_THREAD_CPU.setdefault(f"{config.name}/f", []).append(app_driver.LAST_STATS["ui_thread_cpu_fraction"])
    STEADY.setdefault(f"{config.name}/f", []).append(app_driver.LAST_STATS["steady_steps_per_s"])
    return steps_per_s


def detached_app_run(config: RunConfig, folder: Path) -> float:
    import app_driver

    steps_per_s = app_driver.run_detached_app_once(config, folder)
    UI_THREAD_CPU.setdefault(f"{config.name}/e", []).append(app_driver.LAST_STATS["ui_thread_cpu_fraction"])
    STEADY.setdefault(f"{config.name}/e", []).append(app_driver.LAST_STATS["steady_steps_per_s"])
    return steps_per_s


VARIANTS: dict[str, dict[str, Any]] = {
    "fp32": {}, "bf16": {"precision": "bf16"},
    "fp32+compile": {"compile": True}, "bf16+compile": {"precision": "bf16", "compile": True},
}


def variant_figures(args: argparse.Namespace, folder: Path, table: list[tuple[str, ...]]) -> dict[str, Any]:
    """The headless command on one workload at each precision, eager and compiled, each in a fresh process:
    steady steps/s (compiling happens in the first epoch, left out as warm-up) and the whole command's
    seconds, interleaved rounds, medians."""
    name = args.variant_workload
    presets = {}
    for variant, extra in VARIANTS.items():
        config = workload_config(name, str(folder / "checkpoints"), epochs=WORKLOADS[name]["epochs"],
                                 device=args.device, **extra)
        presets[variant] = folder / f"variant-{variant.replace('+', '-')}.yaml"
        presets[variant].write_text(dump_yaml({**config.to_dict(), "name": f"bench-{name}-{variant}"}))
    runs: dict[str, dict[str, list[float]]] = {variant: {"steady_steps_per_s": [], "command_s": []}
                                               for variant in VARIANTS}
    for round_index in range(args.repeats):
        for variant, preset in presets.items():
            command_s, steady = headless_timed(preset, folder, args.device)
            runs[variant]["steady_steps_per_s"].append(steady)
            runs[variant]["command_s"].append(command_s)
            print(f"  round {round_index + 1}/{args.repeats} {variant}: {steady:.1f} steps/s, {command_s:.2f} s",
                  file=sys.stderr)
    medians = {variant: {key: median(values) for key, values in series.items()} for variant, series in runs.items()}
    base = medians["fp32"]["steady_steps_per_s"]
    table.append((f"variant ({name}, {args.device})", "", "", "", "steps/s", "", "", "", "", "", "", "", "vs fp32"))
    for variant, figures in medians.items():
        table.append((variant, "", "", "", f"{figures['steady_steps_per_s']:.1f}", "", "", "", "", "", "", "",
                      f"{figures['steady_steps_per_s'] / base:.3f}"))
    return {"workload": name, "device": args.device, "runs": runs, "median": medians,
            "vs_fp32": {variant: figures["steady_steps_per_s"] / base for variant, figures in medians.items()}}


def headless_timed(preset: Path, folder: Path, device: str) -> tuple[float, float]:
    """(whole-command seconds, steady steps/s) of `tui-trainer --headless --preset PRESET` in a fresh process."""
    result = folder / "variant-epochs.json"
    command = timed_command(headless_args(str(preset), folder / "checkpoints", device), result)
    timed = timed_process(command, child_env(), folder)
    timing = json.loads(result.read_text())
    return timed.seconds, steady_steps_per_s(timing["epoch_train_s"], timing["epoch_steps"])


PER_STEP_TARGET = 1.5
COMMAND_TARGET = 1.0


def preset_figures(args: argparse.Namespace, folder: Path, table: list[tuple[str, ...]]) -> dict[str, Any]:
    """Section 3's two figures on each preset, against the user's script at each thread setting asked for."""
    presets = [name for name in args.presets.split(",") if name]
    threads = tuple(part.strip() for part in args.tutorial_threads.split(",") if part.strip())
    print(f"presets: {', '.join(presets)}; the script's threads: {', '.join(threads)}", file=sys.stderr)
    figures = measure(presets, folder / "presets", args.repeats, device=args.device, tutorial_threads=threads,
                      before=args.against, tty=args.tty, log=lambda line: print(line, file=sys.stderr))
    rows = [("preset", "sides", "steps/s", "per step", "(paired)", "command s", "command", "(paired)", "cpu")]
    for name, entry in figures.items():
        median_of = entry.to_dict()["median"]
        for pair, ratios in entry.ratios().items():
            top, bottom = pair.split(" / ")
            rows.append((name, pair, f"{median_of['steady_steps_per_s'][top]:.0f} / "
                                     f"{median_of['steady_steps_per_s'][bottom]:.0f}",
                         f"{ratios['per_step']:.2f}", f"{ratios['per_step_paired']:.2f}",
                         f"{median_of['command_s'][top]:.2f} / {median_of['command_s'][bottom]:.2f}",
                         f"{ratios['command']:.2f}", f"{ratios['command_paired']:.2f}", f"{ratios['command_cpu']:.2f}"))
    print_table(f"overhead: speeds, headless / the user's script (targets: per step >= {PER_STEP_TARGET}, "
                f"whole command >= {COMMAND_TARGET}; cpu: the command's CPU seconds, inverted)", rows)
    return {name: entry.to_dict() for name, entry in figures.items()} | {"targets": targets_met(figures)}


def targets_met(figures: dict[str, PresetFigures]) -> dict[str, dict[str, bool]]:
    """For each headless side against each of the script's thread settings: whether every preset meets each
    target."""
    met: dict[str, dict[str, bool]] = {}
    for entry in figures.values():
        for pair, ratios in entry.ratios().items():
            if "tutorial" not in pair:
                continue
            sides = met.setdefault(pair, {"per_step": True, "command": True})
            sides["per_step"] &= ratios.get("per_step", 0.0) >= PER_STEP_TARGET
            sides["command"] &= ratios.get("command", 0.0) >= COMMAND_TARGET
    return met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workloads", default="small,large")
    parser.add_argument("--no-app", action="store_true", help="skip (d), the app")
    parser.add_argument("--detached", action="store_true",
                        help="also (e): the app attached to the same run in a detached engine process")
    parser.add_argument("--in-thread", action="store_true",
                        help="also (f): the app training in a thread of its own process (--in-thread)")
    parser.add_argument("--variants", action="store_true",
                        help="also headless at fp32 and bf16 autocast, each eager and with torch.compile")
    parser.add_argument("--variant-workload", default="large", choices=sorted(WORKLOADS),
                        help="the workload of --variants (default: large)")
    parser.add_argument("--device", default="cpu", help="where the workloads and variants train (default: cpu)")
    parser.add_argument("--presets", default=None,
                        help="shipped presets for the per-step and whole-command figures against a user's script "
                             "(default: every in-memory preset; '' to skip)")
    parser.add_argument("--tutorial-threads", default=None,
                        help="torch threads of the user's script, one run each: 'default' (as the user has it), or "
                             "a count set by OMP_NUM_THREADS (default: default,1; with --quick: 1)")
    parser.add_argument("--against", metavar="DIR", type=Path, default=None,
                        help="also run the presets' headless side from this other checkout, in the same rounds "
                             "(headless@before: a before/after comparison)")
    parser.add_argument("--tty", action="store_true",
                        help="the presets' sides print to a pseudo-terminal (the command draws its progress bar)")
    parser.add_argument("--quick", action="store_true",
                        help="the presets' figures only, 2 rounds, against the script with one thread (within 5 "
                             "minutes on a 2-core machine; torch's default threads make the script take minutes "
                             "on a busy one)")
    args = parser.parse_args()
    if args.quick:
        args.workloads, args.no_app, args.repeats = "", True, min(args.repeats, 2)
    if args.tutorial_threads is None:
        args.tutorial_threads = "1" if args.quick else "default,1"
    if args.presets is None:
        args.presets = ",".join(in_memory_presets())
    epochs = {name: spec["epochs"] for name, spec in WORKLOADS.items()}
    results, table = {}, [("workload", "ms/step (b)", "a tutorial", "b hand", "c headless", "d app",
                           "e detached", "f in-thread", "c/b", "d/b", "e/b", "f/b", "c/a")]
    paired_rows = [("workload", "c/b", "d/b", "e/b", "f/b", "c/a")]
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        for name in filter(None, args.workloads.split(",")):
            config = workload_config(name, str(folder / "checkpoints"), epochs=epochs[name], device=args.device)
            runners = {
                "a_tutorial": lambda config=config: in_own_process("tutorial_loop", config),
                "b_hand_written": lambda config=config: hand_written_loop(config),
                "c_headless": lambda config=config: headless_run(config, folder),
            }
            if not args.no_app:
                runners["d_app"] = lambda config=config: app_run(config, folder)
            if args.detached:
                runners["e_app_detached"] = lambda config=config: detached_app_run(config, folder)
            if args.in_thread:
                runners["f_app_in_thread"] = lambda config=config: in_thread_app_run(config, folder)
            print(f"workload {name}: {WORKLOADS[name]}", file=sys.stderr)
            runs = interleave(runners, args.repeats)
            medians = {key: median(values) for key, values in runs.items()}
            hand = medians["b_hand_written"]
            ratios = {
                "c/b": medians["c_headless"] / hand,
                "c/a": medians["c_headless"] / medians["a_tutorial"],
            }
            if "d_app" in medians:
                ratios["d/b"] = medians["d_app"] / hand
            if "e_app_detached" in medians:
                ratios["e/b"] = medians["e_app_detached"] / hand
            if "f_app_in_thread" in medians:
                ratios["f/b"] = medians["f_app_in_thread"] / hand
            paired = {f"{label} paired": paired_ratio(runs, top, bottom) for label, (top, bottom) in {
                "c/b": ("c_headless", "b_hand_written"), "c/a": ("c_headless", "a_tutorial"),
                "d/b": ("d_app", "b_hand_written"), "e/b": ("e_app_detached", "b_hand_written"),
                "f/b": ("f_app_in_thread", "b_hand_written")}.items() if top in runs}
            results[name] = {"steps_per_s": runs, "median_steps_per_s": medians, "ratios": {**ratios, **paired},
                             "ms_per_step_hand_written": 1000 / hand}
            paired_rows.append((name, *(f"{paired[f'{key} paired']:.3f}" if f"{key} paired" in paired else "-"
                                        for key in ("c/b", "d/b", "e/b", "f/b", "c/a"))))
            table.append((name, f"{1000 / hand:.2f}",
                          *(f"{medians[key]:.1f}" if key in medians else "-"
                            for key in ("a_tutorial", "b_hand_written", "c_headless", "d_app", "e_app_detached",
                                        "f_app_in_thread")),
                          *(f"{ratios[key]:.3f}" if key in ratios else "-"
                            for key in ("c/b", "d/b", "e/b", "f/b", "c/a"))))
        if args.variants:
            results["variants"] = variant_figures(args, folder, table)
        if args.presets:
            results["presets"] = preset_figures(args, folder, table)
    results["ui_thread_cpu_fraction_median"] = {key: median(values) for key, values in UI_THREAD_CPU.items()}
    results["steady_steps_per_s"] = STEADY
    steady_rows = [("steady state (after 2 s)", "runner", "steps/s", "vs b")]
    for key, values in STEADY.items():
        name, runner = key.split("/")
        workload = name.removeprefix("bench-")
        if workload in results:
            ratio = median(values) / results[workload]["median_steps_per_s"]["b_hand_written"]
            results[workload]["ratios"][f"{runner}/b steady"] = ratio
            steady_rows.append((workload, runner, f"{median(values):.1f}", f"{ratio:.3f}"))
    if len(steady_rows) > 1:
        print_table("overhead: the app's steady state", steady_rows)
    if len(paired_rows) > 1:
        print_table("overhead: median of the ratios within each round (paired: drift between rounds cancels)",
                    paired_rows)
    results["torch_threads"] = torch.get_num_threads()
    report("overhead: steps/s (median), ratios", results, table)


if __name__ == "__main__":
    main()
