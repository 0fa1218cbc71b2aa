"""Absurd catalog options are refused in one line naming the field, before anything is allocated."""

from __future__ import annotations

import pytest

from tui_trainer import presets
from tui_trainer.catalog.models import MAX_PARAMETERS, MODELS, build_model, parameter_count
from tui_trainer.cli import main
from tui_trainer.config import ConfigError


def refused(preset: str, overrides: dict, *fragments: str) -> str:
    with pytest.raises(ConfigError) as caught:
        presets.load_config(preset, overrides)
    text = str(caught.value)
    assert len(text.splitlines()) == 1, text
    for fragment in fragments:
        assert fragment in text, (fragment, text)
    return text


@pytest.mark.parametrize(("preset", "overrides", "fragments"), [
    ("digits-mlp", {"model.options.hidden": [100_000_000_000]}, ["model.options.hidden.0", "1000000"]),
    ("digits-mlp", {"model.options.hidden": [64, 10**18]}, ["model.options.hidden.1", "1000000"]),
    ("digits-mlp", {"model.options.hidden": [0]}, ["model.options.hidden.0", "greater than or equal to 1"]),
    ("digits-mlp", {"model.options.hidden": [-3]}, ["model.options.hidden.0"]),
    ("digits-mlp", {"model.options.hidden": [1_000_000, 1_000_000]},
     ["model.options.hidden", "1,000,000,000,000 parameters", f"at most {MAX_PARAMETERS:,}"]),
    ("digits-cnn", {"model.options.channels": [10**9]}, ["model.options.channels.0", "65536"]),
    ("digits-cnn", {"model.options.channels": [8, 0]}, ["model.options.channels.1"]),
    ("digits-cnn", {"model.options.hidden": 10**9}, ["model.options.hidden"]),
    ("spirals-mlp", {"data.options.samples": 10, "data.options.arms": 100},
     ["data.options.arms", "at least 500 samples"]),
    ("spirals-mlp", {"data.options.samples": 10**12}, ["data.options.samples"]),
    ("sine-regression", {"data.options.x_range": [1e308, -1e308]}, ["data.options.x_range"]),
    ("sine-regression", {"data.options.x_range": [1.0, 1.0]}, ["data.options.x_range", "below the high x"]),
    ("sine-regression", {"data.options.x_range": [3.0, -3.0]}, ["data.options.x_range", "below the high x"]),
    ("sine-regression", {"data.options.x_range": [0.0, 1e7]}, ["data.options.x_range.1"]),
    ("mnist-cnn", {"data.options.root": ""}, ["data.options.root"]),
    ("mnist-cnn", {"data.options.root": "x" * 5000}, ["data.options.root"]),
])
def test_absurd_options_are_refused_by_validation(preset, overrides, fragments):
    refused(preset, overrides, *fragments)


def test_the_largest_allowed_widths_still_validate():
    config = presets.load_config("digits-mlp", {"model.options.hidden": [1_000_000]})
    assert config.model.options["hidden"] == [1_000_000]
    assert presets.load_config("sine-regression", {"data.options.x_range": [-1e6, 1e6]})


@pytest.mark.parametrize(("name", "options", "input_shape", "field"), [
    ("mlp", {"hidden": [1_000_000]}, (1, 160, 160), "model.options.hidden"),
    ("mlp", {"hidden": [100_000, 9_000]}, (1, 1000, 1000), "model.options.hidden"),
    ("cnn", {"channels": [65_536], "hidden": 65_536}, (1, 8, 8), "model.options"),
    ("cnn", {"channels": [65_536, 65_536, 65_536], "kernel_size": 15}, (1, 8, 8), "model.options"),
])
def test_a_model_too_big_for_its_input_is_refused_before_allocating(name, options, input_shape, field):
    with pytest.raises(ConfigError) as caught:  # counted on the meta device: a real build would need 100 GB+
        build_model(name, None, options, input_shape, 10)
    text = str(caught.value)
    assert len(text.splitlines()) == 1 and text.startswith(f"{field}: ")
    assert "parameters; allowed: at most 1,000,000,000" in text and f"the {name} for input {input_shape}" in text


@pytest.mark.parametrize(("name", "options", "input_shape"), [
    ("linear", {}, (13,)), ("mlp", {"hidden": [16, 8], "batchnorm": True}, (1, 8, 8)),
    ("cnn", {"channels": [4, 8]}, (3, 32, 32)),
])
def test_the_count_is_the_built_models(name, options, input_shape):
    spec = MODELS[name]
    model = build_model(name, None, options, input_shape, 3)
    count = parameter_count(spec, spec.options.model_validate(options), input_shape, 3)
    assert count == sum(parameter.numel() for parameter in model.parameters())


def test_the_command_line_gives_one_line_for_a_huge_model(tmp_path, capsys):
    for args in (["--preset", "digits-mlp", "--set", "model.options.hidden=[100000000000]"],
                 ["--preset", "digits-cnn", "--set", "model.options.channels=[65536]",
                  "--set", "model.options.hidden=65536"]):
        code = main(["--headless", *args, "--device", "cpu", "--checkpoint-dir", str(tmp_path / "ck")])
        err = capsys.readouterr().err
        assert code == 2, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert "model.options" in err


@pytest.mark.parametrize(("key", "value"), [
    ("scheduler.step_size", 10**9), ("scheduler.min_lr", 1e9), ("scheduler.max_lr", 1e9),
    ("scheduler.patience", 10**9), ("checkpoint.every_epochs", 10**9),
])
def test_absurd_run_settings_are_refused_in_one_line(key, value):
    from tui_trainer import presets
    from tui_trainer.config import ConfigError

    section = key.partition(".")[0]
    extra = {"scheduler.name": {"scheduler.step_size": "step", "scheduler.min_lr": "cosine",
                                "scheduler.max_lr": "onecycle", "scheduler.patience": "plateau"}[key]} \
        if section == "scheduler" else {}
    with pytest.raises(ConfigError) as refused:
        presets.load_config("iris-linear", {**extra, key: value})
    assert key in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize(("loss", "option"), [("smooth_l1", "beta"), ("huber", "delta")])
def test_a_regression_loss_takes_no_absurd_threshold(loss, option):
    from tui_trainer import presets
    from tui_trainer.config import ConfigError

    with pytest.raises(ConfigError, match=f"loss.options.{option}"):
        presets.load_config("sine-regression", {"loss.name": loss, f"loss.options.{option}": 1e300})
