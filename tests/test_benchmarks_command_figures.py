"""benchmarks/command_figures.py and tutorial_script.py: the user's script trains what the preset trains, the
command is timed as its console script runs it (with the checkout asked for, never the current folder's), and
the figures are speeds the right way up."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import command_figures as figures  # noqa: E402

from tui_trainer.catalog.datasets import build_dataset  # noqa: E402
from tui_trainer.catalog.models import build_model  # noqa: E402
from tui_trainer.presets import load_config  # noqa: E402

IN_MEMORY = ["diabetes-regression", "digits-cnn", "digits-mlp", "iris-linear", "sine-regression", "spirals-mlp"]


def tutorial_script():
    spec = importlib.util.spec_from_file_location("tutorial_script", BENCHMARKS / "tutorial_script.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_figures_are_taken_on_every_preset_whose_data_ships_or_is_generated():
    assert figures.in_memory_presets() == IN_MEMORY


@pytest.mark.parametrize("preset", IN_MEMORY)
def test_the_users_script_trains_the_data_and_model_the_preset_does(preset):
    config = load_config(preset, {})
    spec = figures.tutorial_spec(config)
    script = tutorial_script()
    (train_x, train_y), (val_x, val_y), outputs = script.load_data(spec)
    data = build_dataset(config.data.source, config.data.options, config.data.val_split, config.seed)
    for mine, theirs in ((train_x, data.train[0]), (train_y, data.train[1]), (val_x, data.val[0]),
                         (val_y, data.val[1])):
        torch.testing.assert_close(mine, theirs.reshape(mine.shape))
    assert outputs == data.num_outputs
    model = script.make_model(spec["model"], spec["model_options"], tuple(train_x.shape[1:]), outputs)
    catalog = build_model(config.model.name, None, config.model.options, data.input_shape, data.num_outputs)
    assert str(model) == str(catalog)
    assert spec["epochs"] == config.epochs and spec["batch_size"] == config.data.batch_size


def test_the_users_script_saves_its_model_once_and_reports_its_epochs(tmp_path):
    spec = figures.tutorial_spec(load_config("iris-linear", {}), epochs=3)
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    timed = figures.timed_process(figures.tutorial_command(tmp_path / "spec.json", tmp_path / "model.pt"),
                                  figures.child_env(threads="1"), tmp_path)
    timing = json.loads(timed.stdout.strip().splitlines()[-1])
    assert timing["epoch_steps"] == [8, 8, 8] and len(timing["epoch_train_s"]) == 3
    assert set(torch.load(tmp_path / "model.pt", weights_only=True)) == {"1.weight", "1.bias"}
    assert timed.seconds > 0 and timed.cpu_s > 0


def test_the_command_is_timed_with_the_checkout_asked_for_and_its_epochs_timed(tmp_path):
    code = tmp_path / "code" / "tui_trainer"
    (code / "engine").mkdir(parents=True)
    (code / "__init__.py").write_text("")
    (code / "engine" / "__init__.py").write_text("")
    (code / "engine" / "trainer.py").write_text(
        "class Trainer:\n"
        "    step = 0\n"
        "    def _train_epoch(self, window):\n"
        "        self.step += 3\n")
    (code / "cli.py").write_text(
        "def main(argv):\n"
        "    from tui_trainer.engine.trainer import Trainer\n"
        "    trainer = Trainer()\n"
        "    trainer._train_epoch(None)\n"
        "    trainer._train_epoch(None)\n"
        "    print('argv', argv)\n"
        "    return 0\n")
    decoy = tmp_path / "here" / "tui_trainer"  # a package of that name in the current folder is never imported
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("raise SystemExit('imported from the current folder')\n")
    result = tmp_path / "epochs.json"
    timed = figures.timed_process(figures.timed_command(["--headless", "--preset", "x"], result),
                                  figures.child_env(tmp_path / "code"), tmp_path / "here")
    assert "argv ['--headless', '--preset', 'x']" in timed.stdout
    assert json.loads(result.read_text())["epoch_steps"] == [3, 3]


def test_both_sides_run_with_bytecode_cached_and_threads_as_the_user_has_them(monkeypatch):
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    env = figures.child_env()
    assert "PYTHONDONTWRITEBYTECODE" not in env and "OMP_NUM_THREADS" not in env
    assert env["PYTHONPATH"].split(":")[0] == str(figures.ROOT)
    assert figures.child_env(threads="1")["OMP_NUM_THREADS"] == "1"


def test_warm_up_is_the_first_tenth_of_the_epochs_and_never_all_of_them():
    assert [figures.warmup_epochs(epochs) for epochs in (1, 2, 10, 15, 40)] == [0, 1, 1, 2, 4]


def test_the_steady_state_is_the_median_epoch_after_warm_up():
    assert figures.steady_steps_per_s([1.0, 0.1, 0.1, 0.2], [10, 10, 10, 10]) == 100.0
    assert math.isnan(figures.steady_steps_per_s([], []))


def test_ratios_are_speeds_headless_over_the_script():
    entry = figures.PresetFigures("p", 5)
    for headless_s, tutorial_s, headless_steps, tutorial_steps in ((2.0, 4.0, 300.0, 100.0), (2.0, 3.0, 200.0, 100.0),
                                                                    (4.0, 4.0, 300.0, 200.0)):
        entry.add("headless", figures.Timed(headless_s, headless_s, ""), headless_steps)
        entry.add("tutorial@1", figures.Timed(tutorial_s, tutorial_s * 2, ""), tutorial_steps)
    ratios = entry.ratios()["headless / tutorial@1"]
    assert ratios["per_step"] == 300.0 / 100.0
    assert ratios["per_step_paired"] == 2.0
    assert ratios["command"] == 4.0 / 2.0
    assert ratios["command_paired"] == 1.5
    assert ratios["command_cpu"] == 8.0 / 2.0
    assert json.loads(json.dumps(entry.to_dict()))["median"]["command_s"] == {"headless": 2.0, "tutorial@1": 4.0}
