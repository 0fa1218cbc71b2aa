"""Defect 4.11: a run that cannot start on this machine (fp16 on a CPU, a torchvision preset without torchvision,
a batch larger than its data) is refused before anything is made for it, or, where only its engine can tell, with
the same error the engine found: it names its field, the app's setup screen marks that field whichever way the
run was to be hosted, and no run folder is left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_helpers import run_cli
from tests.ui.conftest import driving, make_app, showing, wait_for
from tui_trainer.config import ConfigError
from tui_trainer.launch import LaunchOptions
from tui_trainer.ui.screens.setup import SetupScreen

FP16 = ("iris-linear", {"precision": "fp16", "device": "cpu"}, "precision", "fp16 needs a CUDA device")
TORCHVISION = ("mnist-cnn", {}, "data.source", "needs torchvision")
BIG_BATCH = ("iris-linear", {"data.batch_size": 1000}, "data.batch_size", "larger than the training set")


def no_run_folder(folder: Path) -> bool:
    return not folder.exists() or not any(folder.iterdir())


@pytest.fixture(autouse=True)
def _without_torchvision(monkeypatch):
    """The torchvision case holds whether or not this machine has it."""
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "torchvision" else find_spec(name, *args))


@pytest.mark.parametrize(("preset", "overrides", "path", "text"), [FP16, TORCHVISION],
                         ids=["fp16-on-cpu", "no-torchvision"])
def test_what_this_machine_cannot_train_is_refused_before_an_engine_starts(tmp_path, monkeypatch, preset,
                                                                           overrides, path, text):
    from tui_trainer.detached import launcher

    started = []
    monkeypatch.setattr(launcher.subprocess, "Popen", lambda *args, **kwargs: started.append(args))
    folder = tmp_path / "ck"
    options = LaunchOptions(preset=preset, overrides={"checkpoint.dir": str(folder), **overrides})
    for hosting in ({"owned": True}, {"detach": True}):
        with pytest.raises(ConfigError) as raised:
            launcher.launch_detached(LaunchOptions(**{**vars(options), **hosting}), timeout_s=30)
        assert raised.value.path == path and text in str(raised.value)
    assert started == [] and no_run_folder(folder)


@pytest.mark.slow
def test_a_batch_only_the_engine_can_measure_comes_back_as_its_field_and_leaves_no_folder(tmp_path):
    from tui_trainer.detached.launcher import launch_detached

    folder = tmp_path / "ck"
    for hosting in ({"owned": True}, {"detach": True}):
        options = LaunchOptions(preset="iris-linear", overrides={"checkpoint.dir": str(folder), "device": "cpu",
                                                                 "data.batch_size": 1000}, **hosting)
        with pytest.raises(ConfigError) as raised:
            launch_detached(options, timeout_s=120)
        assert raised.value.path == "data.batch_size", raised.value
        assert str(raised.value) == "data.batch_size: 1000 is larger than the training set (120 samples)"
        assert no_run_folder(folder), sorted(path.name for path in folder.rglob("*"))


@pytest.mark.slow
@pytest.mark.parametrize(("preset", "overrides", "path", "text"), [FP16, BIG_BATCH], ids=["fp16-on-cpu", "big-batch"])
def test_headless_and_detached_say_the_same_and_leave_no_folder(tmp_path, preset, overrides, path, text):
    folder = tmp_path / "ck"
    flags = [f"--set={key}={value}" for key, value in overrides.items()]
    results = [run_cli(["--headless", *extra, "--preset", preset, "--checkpoint-dir", str(folder), *flags], tmp_path)
               for extra in ([], ["--detach"])]
    for result in results:
        assert result.returncode == 2, (result.returncode, result.stderr)
        (line,) = result.stderr.strip().splitlines()
        assert text in line and path in line
    assert results[0].stderr == results[1].stderr
    assert no_run_folder(folder)


def field_error(app, name: str) -> str:
    from textual.widgets import Static

    error = app.setup_screen.query_one(f"#error-{name}" if name else "#form-error", Static)
    return str(error.render()) if error.display else ""


@pytest.mark.slow
@pytest.mark.parametrize("in_thread", [True, False], ids=["in-thread", "engine-process"])
@pytest.mark.parametrize(("preset", "overrides", "field", "text"), [
    ("iris-linear", {"precision": "fp16"}, "precision", "fp16 needs a CUDA device"),
    ("mnist-cnn", {}, "", "mnist needs torchvision"),
], ids=["fp16-on-cpu", "no-torchvision"])
async def test_the_setup_screen_marks_the_same_field_whichever_way_the_run_trains(tmp_path, in_thread, preset,
                                                                                 overrides, field, text):
    folder = tmp_path / "ck"
    app = make_app(folder, preset=preset, in_thread=in_thread, **overrides)
    async with driving(app) as pilot:
        await wait_for(pilot, lambda: app.setup_screen.base is not None, "the preset to load")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: showing(app, SetupScreen) and field_error(app, field),
                       "the form with the field marked", timeout=60)
        assert text in field_error(app, field)
        if field:
            assert app.setup_screen.query_one(f"#{field}").has_class("-invalid")
        assert app.handle is None or not app.handle.active
    assert no_run_folder(folder)
