"""What each layer imports: nothing below the app imports textual; nothing below the headless runner imports
rich; presets, config and the catalog are validated without torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def modules_after_import(*names: str) -> set[str]:
    code = (
        "import importlib, importlib.util, json, sys\n"
        f"for name in {list(names)!r}:\n"
        "    if importlib.util.find_spec(name) is not None:\n"
        "        importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


def top_level(modules: set[str]) -> set[str]:
    return {name.partition(".")[0] for name in modules}


def test_engine_headless_and_config_do_not_import_textual():
    loaded = top_level(modules_after_import("tui_trainer.engine.trainer", "tui_trainer.headless", "tui_trainer.config",
                                            "tui_trainer.launch", "tui_trainer.presets"))
    assert "torch" in loaded, "the probe did import the engine"
    assert "textual" not in loaded and "textual_plotext" not in loaded and "plotext" not in loaded


def test_engine_does_not_import_rich():
    loaded = top_level(modules_after_import("tui_trainer.engine.trainer"))
    assert "rich" not in loaded and "textual" not in loaded


@pytest.mark.parametrize("module", [
    "tui_trainer.config", "tui_trainer.presets", "tui_trainer.launch", "tui_trainer.yaml_io",
    "tui_trainer.catalog.models", "tui_trainer.catalog.losses", "tui_trainer.catalog.optimizers",
    "tui_trainer.catalog.datasets", "tui_trainer.engine.events", "tui_trainer.engine.controls",
    "tui_trainer.engine.metrics", "tui_trainer.engine.checkpoints", "tui_trainer.engine.devices",
    "tui_trainer.engine.schedules",
])
def test_validation_and_plain_data_do_not_import_torch(module):
    loaded = top_level(modules_after_import(module))
    assert "tui_trainer" in loaded
    assert "torch" not in loaded and "sklearn" not in loaded and "textual" not in loaded


def test_listing_the_presets_needs_no_torch():
    code = ("import sys\nfrom tui_trainer import presets\n"
            "entries = presets.discover()\n"
            "config = presets.load_config('digits-cnn', {'optimizer.lr': 0.01})\n"
            "assert entries and config.optimizer.lr == 0.01\n"
            "print('torch' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
