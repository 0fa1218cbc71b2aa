"""The preset's `threads:` field: a number of torch threads, or auto; anything else is one line naming it."""

from __future__ import annotations

import pytest

from tui_trainer.config import ConfigError, config_from_dict, load_preset
from tui_trainer.presets import load_config

BASE = {"task": "classification", "data": {"source": "iris"}, "model": {"name": "linear"},
        "loss": {"name": "cross_entropy"}}


@pytest.mark.parametrize(("given", "threads"), [(1, 1), (16, 16), ("auto", None), (None, None)])
def test_threads_is_a_count_or_auto(given, threads):
    config = config_from_dict({**BASE, "threads": given})
    assert config.threads == threads
    assert config.to_dict().get("threads") == threads, "auto is stored as no setting"


def test_threads_left_out_is_auto():
    assert config_from_dict(BASE).threads is None


@pytest.mark.parametrize("given", [0, -1, 2.0, True, "4", "many", [2], 100_000])
def test_a_threads_that_is_no_count_is_one_line_naming_the_field(tmp_path, given):
    with pytest.raises(ConfigError) as raised:
        config_from_dict({**BASE, "threads": given}, source="mine.yaml")
    message = str(raised.value)
    assert message.startswith("mine.yaml: threads: given ") and "allowed: a number of threads from 1" in message
    assert "\n" not in message


def test_threads_is_read_from_a_preset_file_and_set_from_the_command_line(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("task: classification\ndata: {source: iris}\nmodel: {name: linear}\n"
                    "loss: {name: cross_entropy}\nthreads: 3\n")
    assert load_preset(path).threads == 3
    assert load_config("iris-linear", {"threads": 2}).threads == 2
    with pytest.raises(ConfigError, match="threads: given 0"):
        load_config("iris-linear", {"threads": 0})
