"""Finding presets: shipped, the user's folder, --presets-dir and $TUI_TRAINER_PRESETS; by name or by path."""

from __future__ import annotations

import os

import pytest

from tui_trainer import presets
from tui_trainer.config import ConfigError

PRESET = """\
# {name}: a test preset
description: {description}
task: classification
data: {{source: iris, batch_size: 16}}
model: {{name: linear}}
loss: {{name: cross_entropy}}
epochs: 1
"""


def preset_file(folder, name, description="from a test", suffix=".yaml"):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}{suffix}"
    path.write_text(PRESET.format(name=name, description=description), encoding="utf-8")
    return path


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "tui-trainer" / "presets"


def test_shipped_presets_are_found_without_any_folder_of_ours():
    entries = {entry.name: entry for entry in presets.discover()}
    for name in ("digits-cnn", "digits-mlp", "spirals-mlp", "sine-regression", "diabetes-regression",
                 "iris-linear", "mnist-cnn", "fashion-mnist-cnn", "cifar10-cnn"):
        assert name in entries, name
        assert entries[name].error is None, entries[name].error
        assert entries[name].description
        assert entries[name].path.parent == presets.shipped_presets_dir()
    assert entries["sine-regression"].task == "regression"
    assert [entry.name for entry in presets.discover()] == sorted(entries)


def test_user_folder_follows_xdg_config_home(user_dir):
    assert presets.user_presets_dir() == user_dir
    preset_file(user_dir, "mine", "the user's own")
    entries = {entry.name: entry for entry in presets.discover()}
    assert entries["mine"].description == "the user's own"
    assert entries["mine"].path == user_dir / "mine.yaml"
    assert "digits-cnn" in entries, "shipped presets stay beside the user's"
    assert presets.resolve("mine") == user_dir / "mine.yaml"
    assert presets.load_config("mine").description == "the user's own"


def test_user_folder_defaults_to_dot_config(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert presets.user_presets_dir() == tmp_path / ".config" / "tui-trainer" / "presets"


def test_earlier_folder_wins(tmp_path, user_dir, monkeypatch):
    flag_dir, env_dir, env_dir_2 = tmp_path / "flag", tmp_path / "env", tmp_path / "env2"
    monkeypatch.setenv("TUI_TRAINER_PRESETS", os.pathsep.join([str(env_dir), str(env_dir_2)]))
    for folder in (flag_dir, env_dir, env_dir_2, user_dir):
        preset_file(folder, "digits-cnn", f"from {folder.name}")
        preset_file(folder, f"only-{folder.name}", f"from {folder.name}")
    assert presets.preset_dirs(flag_dir) == [flag_dir, env_dir, env_dir_2, user_dir, presets.shipped_presets_dir()]

    entries = {entry.name: entry for entry in presets.discover(flag_dir)}
    assert entries["digits-cnn"].description == "from flag"
    assert {"only-flag", "only-env", "only-env2", "only-presets"} <= set(entries)
    assert presets.resolve("digits-cnn", flag_dir) == flag_dir / "digits-cnn.yaml"
    assert presets.load_config("digits-cnn", extra_dir=flag_dir).description == "from flag"

    assert presets.resolve("digits-cnn") == env_dir / "digits-cnn.yaml"
    monkeypatch.delenv("TUI_TRAINER_PRESETS")
    assert presets.resolve("digits-cnn") == user_dir / "digits-cnn.yaml"
    (user_dir / "digits-cnn.yaml").unlink()
    assert presets.resolve("digits-cnn") == presets.shipped_presets_dir() / "digits-cnn.yaml"


def test_yml_suffix_and_path_to_a_file(tmp_path, user_dir):
    preset_file(user_dir, "short", suffix=".yml")
    assert presets.resolve("short") == user_dir / "short.yml"
    elsewhere = preset_file(tmp_path / "elsewhere", "by-path", "given by path")
    assert presets.resolve(str(elsewhere)) == elsewhere
    config = presets.load_config(str(elsewhere), {"epochs": 3})
    assert config.name == "by-path" and config.epochs == 3


def test_path_with_tilde(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    path = preset_file(tmp_path, "home-preset")
    assert presets.resolve("~/home-preset.yaml") == path


def test_relative_path_from_cwd(tmp_path, monkeypatch):
    preset_file(tmp_path / "sub", "relative")
    monkeypatch.chdir(tmp_path)
    assert presets.load_config("sub/relative.yaml").name == "relative"
    assert presets.load_config("./sub/relative.yaml").name == "relative"


def test_unknown_name_suggests_the_nearest():
    with pytest.raises(ConfigError) as caught:
        presets.resolve("digits-cn")
    text = str(caught.value)
    assert len(text.splitlines()) == 1
    assert "no preset named 'digits-cn'" in text and "did you mean 'digits-cnn'?" in text
    assert "iris-linear" in text


def test_missing_path_is_one_line(tmp_path):
    with pytest.raises(ConfigError) as caught:
        presets.resolve(str(tmp_path / "nope.yaml"))
    assert str(caught.value) == f"{tmp_path / 'nope.yaml'}: no such file"


def test_broken_user_preset_is_listed_with_its_error(user_dir):
    user_dir.mkdir(parents=True)
    (user_dir / "broken.yaml").write_text("task: classification\nepochs: ten\n", encoding="utf-8")
    (user_dir / "syntax.yaml").write_text("a: [\n", encoding="utf-8")
    entries = {entry.name: entry for entry in presets.discover()}
    assert entries["broken"].error and "broken.yaml" in entries["broken"].error
    assert len(entries["broken"].error.splitlines()) == 1
    assert "YAML syntax error" in entries["syntax"].error
    assert entries["digits-cnn"].error is None
    with pytest.raises(ConfigError):
        presets.load_config("broken")


def test_missing_folders_are_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv("TUI_TRAINER_PRESETS", str(tmp_path / "does-not-exist"))
    assert "digits-cnn" in {entry.name for entry in presets.discover(tmp_path / "nor-this")}


def test_load_returns_the_raw_dict_for_overrides():
    path, raw = presets.load("digits-mlp")
    assert path == presets.shipped_presets_dir() / "digits-mlp.yaml"
    assert raw["optimizer"]["lr"] == 2e-3 and isinstance(raw["optimizer"]["lr"], float)


def test_load_config_applies_overrides_before_validation():
    config = presets.load_config("digits-mlp", {"optimizer.name": "sgd", "optimizer.momentum": 0.5})
    assert config.optimizer.name == "sgd" and config.optimizer.momentum == 0.5
    with pytest.raises(ConfigError) as caught:
        presets.load_config("digits-mlp", {"optimizer.name": "adam", "optimizer.momentum": 0.5})
    assert "optimizer.momentum" in str(caught.value)
