"""A checkpoint is data: the code its stored config names (model.import today, any `import:` field tomorrow)
runs only when the user says so for that file, with --trust-code or by confirming in the app, which shows the
exact module and factory. The program's own imports never come from the user's current folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from pydantic import BaseModel, Field

from tests.cli_helpers import cli_env, run_main
from tests.reliability.app_helpers import good_checkpoint
from tests.ui.conftest import _no_training_thread_left, driving, make_app, showing, wait_for  # noqa: F401
from tui_trainer.config import UntrustedCode, import_targets
from tui_trainer.launch import LaunchOptions, resolve_config
from tui_trainer.ui.app import TrainerApp
from tui_trainer.ui.screens.checkpoints import LoadPanel
from tui_trainer.ui.screens.confirm import ConfirmModal
from tui_trainer.ui.screens.dashboard import DashboardScreen

MODEL_SOURCE = """
import os
import pathlib

pathlib.Path(os.environ["TRUST_TEST_MARKER"]).write_text("imported")

from torch import nn


def build(input_shape, num_outputs):
    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[-1], num_outputs))
"""


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return good_checkpoint(tmp_path_factory.mktemp("good"))


@pytest.fixture
def marker(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "code-ran"
    monkeypatch.setenv("TRUST_TEST_MARKER", str(path))
    return path


@pytest.fixture
def user_model(tmp_path, monkeypatch) -> str:
    """A model factory of the user's that leaves a marker when its module is imported."""
    folder = tmp_path / "modules"
    folder.mkdir()
    name = f"trust_model_{os.getpid()}_{time.monotonic_ns()}"
    (folder / f"{name}.py").write_text(textwrap.dedent(MODEL_SOURCE), encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    yield f"{name}:build"
    sys.modules.pop(name, None)


def with_model(good: Path, folder: Path, model: dict, name: str = "imports.pt") -> Path:
    """good's checkpoint with its stored config's model section replaced."""
    payload = torch.load(good, weights_only=True)
    payload["config"] = {**payload["config"], "model": model}
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(payload, folder / name)
    return folder / name


def planted_command(marker: Path) -> dict:
    return {"import": "os:system", "options": {"command": f"touch {marker}"}}


def test_resuming_never_imports_what_a_checkpoint_names(good, tmp_path, marker, user_model):
    for model in (planted_command(marker), {"import": user_model}, {"import": "subprocess:getoutput"}):
        path = with_model(good, tmp_path / "files", model)
        with pytest.raises(UntrustedCode) as refused:
            resolve_config(LaunchOptions(resume=str(path)))
        assert refused.value.targets == [("model.import", model["import"])]
        assert model["import"] in str(refused.value) and "--trust-code" in str(refused.value)
        assert not marker.exists()
    assert user_model.partition(":")[0] not in sys.modules


def test_only_the_confirmed_targets_are_trusted(good, tmp_path, marker, user_model):
    path = with_model(good, tmp_path / "files", {"import": user_model})
    with pytest.raises(UntrustedCode):
        resolve_config(LaunchOptions(resume=str(path), trusted_imports=["os:system"]))
    config, _ = resolve_config(LaunchOptions(resume=str(path), trusted_imports=[user_model]))
    assert config.model.import_target == user_model
    config, _ = resolve_config(LaunchOptions(resume=str(path), trust_code=True))
    assert config.model.import_target == user_model
    assert not marker.exists(), "resolving a config imports nothing"


def test_a_target_the_user_sets_on_the_command_line_is_theirs(good, tmp_path, marker, user_model):
    path = with_model(good, tmp_path / "files", planted_command(marker))
    config, _ = resolve_config(LaunchOptions(resume=str(path), overrides={"model.import": user_model,
                                                                          "model.options": {}}))
    assert config.model.import_target == user_model


def test_headless_resume_refuses_in_one_line_and_runs_nothing(good, tmp_path, marker, user_model):
    for model in (planted_command(marker), {"import": user_model}):
        path = with_model(good, tmp_path / "files", model)
        code, out, err = run_main(["--headless", "--resume", str(path), "--max-steps", "1"])
        assert code == 2, (out, err)
        assert len(err.strip().splitlines()) == 1 and "--trust-code" in err and model["import"] in err
        assert "Traceback" not in out + err
        assert not marker.exists()


def test_trust_code_runs_the_users_own_model(good, tmp_path, marker, user_model):
    path = with_model(good, tmp_path / "files", {"import": user_model})
    code, out, err = run_main(["--headless", "--resume", str(path), "--trust-code", "--epochs", "2",
                               "--checkpoint-dir", str(tmp_path / "runs")])
    assert code == 0, (out, err)
    assert marker.exists()


def test_trust_code_goes_with_resume():
    code, _, err = run_main(["--headless", "--trust-code"])
    assert code == 2 and "--trust-code goes with --resume" in err


def test_every_import_field_of_any_section_is_found():
    """Found through the schema, so a section added later (data, loss, step, metrics) cannot be missed."""

    class Part(BaseModel):
        target: str | None = Field(None, alias="import")
        options: dict = {}

    class Whole(BaseModel):
        data: Part
        loss: Part
        nested: dict = {}

    whole = Whole.model_validate({"data": {"import": "a.b:c"}, "loss": {"options": {"import": "not:a_field"}},
                                  "nested": {"import": "x:y"}})
    assert import_targets(whole) == [("data.import", "a.b:c")]


async def test_the_load_panel_asks_naming_the_module_and_factory(good, tmp_path, marker, user_model):
    folder = tmp_path / "checkpoints"
    path = with_model(good, folder, {"import": user_model})
    module, _, factory = user_model.partition(":")
    app = make_app(folder)
    async with driving(app) as pilot:
        await wait_for(pilot, lambda: app.setup_screen.base is not None, "the preset")
        for answer in ("n", "y"):
            await pilot.press("l")
            await wait_for(pilot, lambda: showing(app, LoadPanel) and str(path) in app.screen.infos, "the listing")
            await pilot.press("enter")
            await wait_for(pilot, lambda: showing(app, ConfirmModal), "the question")
            question = str(app.screen.query_one(".panel-text").render())
            assert f"module {module}" in question and f"factory {factory}" in question
            assert not marker.exists(), "nothing is imported before the user answers"
            await pilot.press(answer)
            if answer == "n":
                await wait_for(pilot, lambda: showing(app, LoadPanel), "the panel again")
                assert app.handle is None and not marker.exists()
                await pilot.press("escape")
        await wait_for(pilot, lambda: showing(app, DashboardScreen) and app.handle is not None
                       and app.handle.view.run_id, "the loaded run", timeout=30)
        assert marker.exists()


async def test_the_app_asks_before_resuming_a_file_that_names_code(good, tmp_path, marker, user_model):
    path = with_model(good, tmp_path / "files", {"import": user_model})
    app = TrainerApp(LaunchOptions(resume=str(path), in_thread=True,
                                   overrides={"checkpoint.dir": str(tmp_path / "runs")}))
    async with driving(app) as pilot:
        await wait_for(pilot, lambda: showing(app, ConfirmModal), "the question")
        assert user_model.partition(":")[2] in str(app.screen.query_one(".panel-text").render())
        await pilot.press("n")
        await wait_for(pilot, lambda: any("Not resumed" in note.message for note in app._notifications),
                       "the refusal")
        assert app.handle is None and not marker.exists()


# ---------------------------------------------------------------- the current folder


PLANTED = "import os, pathlib\npathlib.Path(os.environ['TRUST_TEST_MARKER'] + '-{name}').write_text('ran')\n"


@pytest.mark.slow
def test_a_detached_engine_never_imports_modules_from_the_current_folder(tmp_path, marker):
    """psutil and torch are imported by the engine; copies planted in the folder the user starts from must not
    be the ones that run (python -m puts the current folder first on sys.path)."""
    work = tmp_path / "project"
    work.mkdir()
    (work / "psutil.py").write_text(PLANTED.format(name="psutil"), encoding="utf-8")
    (work / "torch").mkdir()
    (work / "torch" / "__init__.py").write_text(PLANTED.format(name="torch"), encoding="utf-8")
    (work / "tui_trainer").mkdir()
    (work / "tui_trainer" / "__init__.py").write_text(PLANTED.format(name="tui_trainer"), encoding="utf-8")
    command = shutil.which("tui-trainer", path=str(Path(sys.executable).parent))
    assert command, "the console script is installed beside the interpreter"
    env = {**cli_env(tmp_path), "TRUST_TEST_MARKER": str(marker)}
    runs = tmp_path / "runs"
    started = subprocess.run([command, "--headless", "--detach", "--preset", "iris-linear", "--epochs", "100000",
                              "--checkpoint-dir", str(runs)], cwd=work, env=env, capture_output=True, text=True,
                             timeout=240, stdin=subprocess.DEVNULL)
    assert started.returncode == 0, started.stderr
    run_dir = next(runs.iterdir())
    try:
        from tui_trainer.runs.registry import read_run_info

        info = read_run_info(run_dir)
        command_line = Path(f"/proc/{info.pid}/cmdline").read_bytes().decode()
        assert "optimizer" not in command_line and "{" not in command_line, "the config is not on the command line"
        assert (run_dir / "launch.json").stat().st_mode & 0o077 == 0
    finally:
        stopped = subprocess.run([command, "stop", run_dir.name, "--checkpoint-dir", str(runs)], cwd=work, env=env,
                                 capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    assert stopped.returncode == 0, stopped.stderr
    planted = [path.name for path in tmp_path.iterdir() if path.name.startswith(marker.name)]
    assert planted == [], f"modules from the current folder ran: {planted}"


# ---------------------------------------------------------------- private by default


@pytest.fixture
def no_log_handlers(monkeypatch):
    """The package's logger as in a fresh process (another test may have set up its file already)."""
    import logging

    from tui_trainer import logs

    logger = logging.getLogger(logs.LOGGER_NAME)
    monkeypatch.setattr(logger, "handlers", [])
    yield logger
    for handler in logger.handlers:
        handler.close()


def test_the_log_is_private(tmp_path, monkeypatch, no_log_handlers):
    from tui_trainer import logs

    state = tmp_path / "state"
    (state / "tui-trainer").mkdir(parents=True, mode=0o755)
    os.chmod(state / "tui-trainer", 0o755)  # made by an older version
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    path = logs.setup_file_logging()
    assert path is not None
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_link_planted_at_the_logs_name_is_not_followed(tmp_path, monkeypatch, no_log_handlers):
    from tui_trainer import logs

    state = tmp_path / "state"
    (state / "tui-trainer").mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("mine\n")
    (state / "tui-trainer" / "tui-trainer.log").symlink_to(victim)
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    assert logs.setup_file_logging() is None
    assert no_log_handlers.handlers == []
    assert victim.read_text() == "mine\n"


def test_the_checkpoints_listing_says_which_files_carry_code(good, tmp_path, marker, monkeypatch):
    import json

    monkeypatch.setenv("COLUMNS", "240")

    folder = tmp_path / "listing"
    with_model(good, folder, planted_command(marker), name="planted.pt")
    with_model(good, folder, {"import": "pkg.models:build"}, name="mine.pt")
    code, out, _ = run_main(["checkpoints", str(folder), "--json"])
    rows = {Path(row["path"]).name: row for row in map(json.loads, out.splitlines())}
    assert rows["planted.pt"]["imports"] == ["model.import=os:system"]
    assert rows["mine.pt"]["imports"] == ["model.import=pkg.models:build"]
    code, out, _ = run_main(["checkpoints", str(folder)])
    assert code == 0 and "os:system" in out and "--trust-code" in out
    assert not marker.exists()
