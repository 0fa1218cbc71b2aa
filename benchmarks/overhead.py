"""What the cockpit costs training: steps/s of the same work run four ways, interleaved, median of N.

(a) tutorial: a DataLoader over a TensorDataset, loss.item() every step; in a Python process of its own, as a
    user's script runs (after an untimed first epoch there): the engine tunes malloc for the whole process it
    trains in (host_memory.keep_freed_memory), which a script of the user's would not have.
(b) hand-written best: the engine's tricks by hand (device-resident batches by index, losses summed on the
    device and read every 50 steps, zero_grad(set_to_none=True), the fused optimizer, malloc keeping freed
    memory: host_memory.keep_freed_memory).
(c) headless: `tui-trainer --headless --json` in this process (the same code path as the command); for the
    presets, against (a), in a process of its own like (a), after one untimed epoch there: what ran before in
    this process (the apps, the variants) moved a preset's headless rate by up to a quarter.
(d) app: the full Textual app under App.run_test, charts and gauges updating, as a user gets it: the run
    trains in an engine process the app starts for it.
(e) with --detached: the same app attached to the run in a detached engine process (tui-trainer --detach).
(f) with --in-thread: the same app training in a thread of its own process (tui-trainer --in-thread).

Each does the same epochs of training plus a validation pass per epoch on the same data and model.
Run: python benchmarks/overhead.py [--repeats 5] [--workloads small,large] [--no-app] [--detached] [--in-thread]
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

import torch
from common import WORKLOADS, interleave, median, paired_ratio, print_table, report, workload_config

from tui_trainer.catalog.datasets import build_dataset
from tui_trainer.catalog.losses import build_loss
from tui_trainer.catalog.models import build_model
from tui_trainer.catalog.optimizers import OPTIMIZERS
from tui_trainer.config import RunConfig
from tui_trainer.engine.host_memory import keep_freed_memory
from tui_trainer.presets import load_config
from tui_trainer.yaml_io import dump_yaml


def _prepare(config: RunConfig, fused: bool = False):
    data = build_dataset(config.data.source, config.data.options, config.data.val_split, config.seed)
    torch.manual_seed(config.seed)
    model = build_model(config.model.name, None, config.model.options, data.input_shape, data.num_outputs)
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
    train_x, train_y = data.train
    val_x, val_y = data.val
    batch = config.data.batch_size
    steps_per_epoch = _steps_per_epoch(len(train_x), batch)
    generator = torch.Generator().manual_seed(1)
    loss_sum, correct = torch.zeros(()), torch.zeros(())
    steps = 0
    start = time.perf_counter()
    for _ in range(config.epochs):
        model.train()
        order = torch.randperm(len(train_x), generator=generator)
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
            sums = torch.zeros(2)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workloads", default="small,large")
    parser.add_argument("--no-app", action="store_true", help="skip (d), the app")
    parser.add_argument("--detached", action="store_true",
                        help="also (e): the app attached to the same run in a detached engine process")
    parser.add_argument("--in-thread", action="store_true",
                        help="also (f): the app training in a thread of its own process (--in-thread)")
    parser.add_argument("--variants", action="store_true", help="also bf16 autocast and torch.compile (headless)")
    parser.add_argument("--presets",
                        default="digits-mlp,digits-cnn,spirals-mlp,sine-regression,iris-linear,diabetes-regression",
                        help="shipped presets for the tutorial-vs-headless comparison ('' to skip)")
    args = parser.parse_args()
    epochs = {name: spec["epochs"] for name, spec in WORKLOADS.items()}
    results, table = {}, [("workload", "ms/step (b)", "a tutorial", "b hand", "c headless", "d app",
                           "e detached", "f in-thread", "c/b", "d/b", "e/b", "f/b", "c/a")]
    paired_rows = [("workload", "c/b", "d/b", "e/b", "f/b", "c/a")]
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        for name in filter(None, args.workloads.split(",")):
            config = workload_config(name, str(folder / "checkpoints"), epochs=epochs[name])
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
            # What this CPU can show of the GPU-minded options: autocast bf16 and torch.compile, headless.
            table.append(("variant (large)", "", "", "", "c headless", "", "", "", "", "", "", "", "vs fp32"))
            base = workload_config("large", str(folder / "checkpoints"), epochs=epochs["large"])
            variants = {"fp32": base,
                        "bf16": workload_config("large", str(folder / "checkpoints"), epochs=epochs["large"],
                                                precision="bf16"),
                        "compile": workload_config("large", str(folder / "checkpoints"), epochs=epochs["large"],
                                                   compile=True)}
            runs = interleave({name: lambda config=config: headless_run(config, folder)
                               for name, config in variants.items()}, args.repeats)
            medians = {key: median(values) for key, values in runs.items()}
            results["variants_large"] = {"steps_per_s": runs, "median_steps_per_s": medians}
            for name in variants:
                table.append((name, "", "", "", f"{medians[name]:.1f}", "", "", "", "", "", "", "",
                              f"{medians[name] / medians['fp32']:.3f}"))
        if args.presets:
            table.append(("preset", "", "a tutorial", "", "c headless", "", "", "", "", "", "", "", "c/a"))
            for name in args.presets.split(","):
                config = load_config(name, {"checkpoint.dir": str(folder / "checkpoints"), "device": "cpu"})
                runs = interleave({"a_tutorial": lambda config=config: in_own_process("tutorial_loop", config),
                                   "c_headless": lambda config=config: in_own_process("headless_run", config, folder)},
                                  args.repeats)
                medians = {key: median(values) for key, values in runs.items()}
                ratio = medians["c_headless"] / medians["a_tutorial"]
                paired = paired_ratio(runs, "c_headless", "a_tutorial")
                results[f"preset:{name}"] = {"steps_per_s": runs, "median_steps_per_s": medians, "c/a": ratio,
                                             "c/a paired": paired}
                table.append((name, "", f"{medians['a_tutorial']:.1f}", "", f"{medians['c_headless']:.1f}", "", "",
                              "", "", "", "", "", f"{ratio:.3f}"))
                paired_rows.append((name, "-", "-", "-", "-", f"{paired:.3f}"))
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
