"""Run configs: presets validate, numbers read as numbers, and every broken preset gets one clear line."""

from __future__ import annotations

import copy
import math
import textwrap

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tui_trainer import presets
from tui_trainer.config import (
    ConfigError,
    RunConfig,
    apply_overrides,
    config_from_dict,
    dump_config,
    load_preset,
    parse_assignment,
    read_preset_dict,
)
from tui_trainer.yaml_io import load_yaml, parse_scalar

SHIPPED = sorted(presets.shipped_presets_dir().glob("*.yaml"))

VALID = """\
name: tiny
task: classification
data:
  source: digits
  batch_size: 32
model:
  name: mlp
  options:
    hidden: [16]
loss:
  name: cross_entropy
optimizer:
  name: adam
  lr: 1e-3
  weight_decay: 1e-4
epochs: 2
"""


def write(tmp_path, text, name="broken.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def one_line_error(error: ConfigError, *fragments: str) -> str:
    text = str(error)
    assert len(text.splitlines()) == 1, text
    assert "\n" not in text and "Traceback" not in text
    for fragment in fragments:
        assert fragment in text, (fragment, text)
    return text


def valid_raw() -> dict:
    return load_yaml(VALID)


# ---------------------------------------------------------------- shipped presets


@pytest.mark.parametrize("path", SHIPPED, ids=[path.stem for path in SHIPPED])
def test_every_shipped_preset_validates(path):
    config = load_preset(path)
    assert isinstance(config, RunConfig)
    assert config.name == path.stem
    assert config.description
    assert isinstance(config.optimizer.lr, float) and config.optimizer.lr > 0


@pytest.mark.parametrize("path", SHIPPED, ids=[path.stem for path in SHIPPED])
def test_every_shipped_preset_opens_with_a_comment_on_how_to_run_it(path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith(f"# {path.stem}:")
    assert "tui-trainer" in path.read_text(encoding="utf-8")


def test_the_shipped_presets_are_the_promised_ones():
    names = {path.stem for path in SHIPPED}
    assert names >= {"digits-mlp", "digits-cnn", "spirals-mlp", "sine-regression", "diabetes-regression",
                     "iris-linear", "mnist-cnn", "fashion-mnist-cnn", "cifar10-cnn"}
    assert presets.DEFAULT_PRESET == "digits-cnn"


# ---------------------------------------------------------------- numbers


def test_lr_in_e_notation_is_a_float(tmp_path):
    config = load_preset(write(tmp_path, VALID, "tiny.yaml"))
    assert type(config.optimizer.lr) is float and config.optimizer.lr == 1e-3
    assert type(config.optimizer.weight_decay) is float and config.optimizer.weight_decay == 1e-4


@pytest.mark.parametrize(("text", "value"), [
    ("1e-3", 1e-3), ("1E-3", 1e-3), ("+2e5", 2e5), ("-1e-2", -1e-2), ("3e0", 3.0), ("1.5e-3", 1.5e-3),
    ("0.01", 0.01), (".5", 0.5), ("10", 10), ("true", True), ("null", None),
])
def test_yaml_1_2_numbers(text, value):
    assert load_yaml(f"x: {text}")["x"] == value
    assert type(load_yaml(f"x: {text}")["x"]) is type(value)
    assert parse_scalar(text) == value


@pytest.mark.parametrize("text", ["1e", "e3", "1e-", "adam", "cuda:0", "1.2.3"])
def test_things_that_are_not_numbers_stay_strings(text):
    assert load_yaml(f"x: {text}")["x"] == text
    assert parse_scalar(text) == text


def test_special_floats_are_read_but_refused(tmp_path):
    assert math.isnan(load_yaml("x: .nan")["x"])
    assert load_yaml("x: -.inf")["x"] == -math.inf
    path = write(tmp_path, VALID.replace("lr: 1e-3", "lr: .inf"))
    with pytest.raises(ConfigError) as caught:
        load_preset(path)
    one_line_error(caught.value, str(path), "optimizer.lr", "finite", "inf")


def test_a_preset_cannot_build_python_objects(tmp_path):
    path = write(tmp_path, "task: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError) as caught:
        load_preset(path)
    one_line_error(caught.value, str(path), "YAML")


# ---------------------------------------------------------------- broken presets, one line each

BROKEN = [
    # (id, change to VALID as (old, new) or a whole text, field path, fragments of given and allowed)
    ("yaml-syntax", "task: classification\ndata: {source: digits\n", "", ["YAML syntax error", "line"]),
    ("yaml-tab", "task:\tclassification\n\tdata: 1\n", "", ["YAML syntax error", "line 1"]),
    ("wrong-type-epochs", ("epochs: 2", "epochs: ten"), "epochs", ["'ten'", "integer"]),
    ("bool-is-not-int", ("epochs: 2", "epochs: true"), "epochs", ["True", "integer"]),
    ("wrong-type-batch", ("batch_size: 32", "batch_size: [32]"), "data.batch_size", ["[32]", "integer"]),
    ("string-lr", ("lr: 1e-3", "lr: fast"), "optimizer.lr", ["'fast'", "number"]),
    ("section-not-mapping", ("loss:\n  name: cross_entropy", "loss: cross_entropy"), "loss",
     ["'cross_entropy'", "dictionary"]),
    ("unknown-top-key", ("epochs: 2", "epoch: 2"), "epoch", ["unknown key", "did you mean 'epochs'?", "allowed:",
                                                             "max_steps"]),
    ("unknown-nested-key", ("weight_decay: 1e-4", "weight_decy: 1e-4"), "optimizer.weight_decy",
     ["unknown key", "did you mean 'weight_decay'?", "betas"]),
    ("unknown-model-option", ("hidden: [16]", "hiden: [16]"), "model.options.hiden",
     ["model 'mlp'", "did you mean 'hidden'?", "dropout"]),
    ("unknown-dataset-option", ("source: digits", "source: spirals\n  options: {armz: 3}"), "data.options.armz",
     ["dataset 'spirals'", "did you mean 'arms'?", "noise"]),
    ("unknown-model", ("name: mlp", "name: resnet"), "model.name", ["'resnet'", "allowed: linear, mlp, cnn",
                                                                     "import"]),
    ("unknown-loss", ("name: cross_entropy", "name: crossentropy"), "loss.name",
     ["'crossentropy'", "did you mean 'cross_entropy'?", "mse"]),
    ("unknown-optimizer", ("name: adam", "name: adamm"), "optimizer.name",
     ["'adamm'", "did you mean 'adam'?", "sgd, adam, adamw, rmsprop"]),
    ("unknown-dataset", ("source: digits", "source: digitz"), "data.source", ["'digitz'", "did you mean 'digits'?",
                                                                              "spirals"]),
    ("lr-zero", ("lr: 1e-3", "lr: 0"), "optimizer.lr", ["greater than 0", "given 0"]),
    ("lr-negative", ("lr: 1e-3", "lr: -1e-3"), "optimizer.lr", ["greater than 0", "-0.001"]),
    ("loss-does-not-fit-task", ("name: cross_entropy", "name: mse"), "loss.name",
     ["'mse'", "classification", "allowed: cross_entropy, nll, bce_with_logits"]),
    ("optimizer-option-not-taken", ("weight_decay: 1e-4", "momentum: 0.9"), "optimizer.momentum",
     ["adam does not take momentum", "lr, weight_decay, betas"]),
    ("sgd-takes-no-betas", ("name: adam", "name: sgd\n  betas: [0.9, 0.99]"), "optimizer.betas",
     ["sgd does not take betas", "momentum, nesterov"]),
    ("scheduler-option-not-taken", ("epochs: 2", "epochs: 2\nscheduler: {name: cosine, max_lr: 0.1}"),
     "scheduler.max_lr", ["'cosine' does not take max_lr", "min_lr, warmup_steps"]),
    ("unknown-scheduler", ("epochs: 2", "epochs: 2\nscheduler: {name: cosin}"), "scheduler.name",
     ["'cosin'", "'cosine'", "'plateau'"]),
    ("unknown-task", ("task: classification", "task: clustering"), "task", ["'clustering'", "'regression'"]),
    ("task-does-not-fit-data", ("task: classification", "task: regression"), "task",
     ["'regression'", "'digits'", "classification"]),
    ("unknown-device", ("epochs: 2", "epochs: 2\ndevice: tpu"), "device", ["'tpu'", "auto, cpu, cuda, cuda:N"]),
    ("fp16-on-cpu", ("epochs: 2", "epochs: 2\ndevice: cpu\nprecision: fp16"), "precision",
     ["fp16 needs a CUDA device", "bf16 or fp32"]),
    ("missing-model", ("model:\n  name: mlp\n  options:\n    hidden: [16]\n", ""), "model", ["required"]),
    ("model-name-and-import", ("name: mlp", "name: mlp\n  import: pkg.mod:make"), "model", ["either name or import"]),
    ("bad-import-target", ("name: mlp\n  options:\n    hidden: [16]", "import: not a target"), "model.import",
     ["'not a target'", "package.module:factory"]),
    ("metric-not-measured", ("epochs: 2", "epochs: 2\ncheckpoint: {monitor: val_r2}"), "checkpoint.monitor",
     ["'val_r2'", "val_loss, val_accuracy"]),
    ("early-stopping-metric", ("epochs: 2", "epochs: 2\nearly_stopping: {monitor: val_mae}"),
     "early_stopping.monitor", ["'val_mae'", "val_accuracy"]),
    ("nesterov-needs-momentum", ("name: adam", "name: sgd\n  nesterov: true"), "optimizer",
     ["nesterov needs momentum"]),
    ("betas-out-of-range", ("weight_decay: 1e-4", "betas: [0.9, 1.5]"), "optimizer", ["betas", "[0.9, 1.5]", "[0, 1)"]),
    ("val-split-out-of-range", ("batch_size: 32", "batch_size: 32\n  val_split: 1.5"), "data.val_split",
     ["less than 1", "1.5"]),
    ("huge-number", ("epochs: 2", "epochs: 100000000000000000000000000000"), "epochs", ["less than or equal"]),
    ("negative-seed", ("epochs: 2", "epochs: 2\nseed: -1"), "seed", ["greater than or equal to 0", "-1"]),
    ("label-smoothing-range", ("name: cross_entropy", "name: cross_entropy\n  options: {label_smoothing: 2}"),
     "loss.options.label_smoothing", ["less than 1", "2"]),
    ("loss-option-not-taken", ("name: cross_entropy", "name: cross_entropy\n  options: {delta: 1.0}"),
     "loss.options.delta", ["loss 'cross_entropy'", "label_smoothing"]),
    ("activation", ("hidden: [16]", "hidden: [16]\n    activation: swish"), "model.options.activation",
     ["'swish'", "'relu'", "'gelu'"]),
]


@pytest.mark.parametrize(("change", "path", "fragments"), [case[1:] for case in BROKEN],
                         ids=[case[0] for case in BROKEN])
def test_broken_preset_gives_one_line(tmp_path, change, path, fragments):
    if isinstance(change, tuple):
        old, new = change
        assert old in VALID
        text = VALID.replace(old, new, 1)
    else:
        text = change
    file = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_preset(file)
    error = caught.value
    message = one_line_error(error, *fragments)
    assert message.startswith(f"{file}: "), message
    assert error.source == str(file)
    assert error.path == path, message
    if path:
        assert message.startswith(f"{file}: {path}: "), message


def test_several_problems_are_counted_in_the_one_line(tmp_path):
    file = write(tmp_path, VALID.replace("epochs: 2", "epochs: ten\nseed: x\ndevice: 3"))
    with pytest.raises(ConfigError) as caught:
        load_preset(file)
    one_line_error(caught.value, "(and 2 more problems)")


@pytest.mark.parametrize(("content", "fragment"), [
    (None, "no such file"),
    ("", "is empty"),
    ("# only a comment\n", "is empty"),
    ("- a\n- b\n", "a preset is a mapping of keys to values; given list"),
    ("42\n", "given int"),
    ("just words\n", "given str"),
])
def test_files_that_are_not_presets(tmp_path, content, fragment):
    path = tmp_path / "odd.yaml"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    for overrides in (None, {"optimizer.lr": 0.1}):
        with pytest.raises(ConfigError) as caught:
            load_preset(path, overrides)
        message = one_line_error(caught.value, str(path), fragment)
        assert message.startswith(str(path))


def test_a_folder_and_binary_and_huge_files(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_preset(tmp_path)
    one_line_error(caught.value, "is a folder")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x89PNG garbage")
    with pytest.raises(ConfigError) as caught:
        load_preset(binary)
    one_line_error(caught.value, "not UTF-8")
    huge = tmp_path / "huge.yaml"
    huge.write_text("# " + "x" * 2_000_000 + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_preset(huge)
    one_line_error(caught.value, "larger than")


@pytest.mark.parametrize("text", [
    "a: " + "[" * 5000 + "]" * 5000 + "\n",
    "a: " + "{b: " * 3000 + "1" + "}" * 3000 + "\n",
    "".join("  " * depth + f"k{depth}:\n" for depth in range(300)) + "  " * 300 + "v: 1\n",
], ids=["lists", "flow-mappings", "indented-mappings"])
def test_deep_nesting_is_one_line(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_preset(path)
    one_line_error(caught.value, str(path))


def test_deeply_nested_dict_in_python(tmp_path):
    raw = valid_raw()
    node = raw["model"]["options"]
    for _ in range(10_000):
        node["deeper"] = {}
        node = node["deeper"]
    with pytest.raises(ConfigError) as caught:
        config_from_dict(raw, source="deep")
    one_line_error(caught.value, "deep: model.options.deeper", "unknown key")


@pytest.mark.parametrize("key", ["a\nb", "x\u2028y", "z\x85", "tab\tkey\r"])
def test_keys_with_line_breaks_stay_one_line(key):
    raw = valid_raw()
    raw[key] = 1
    with pytest.raises(ConfigError) as caught:
        config_from_dict(raw, source="p.yaml")
    one_line_error(caught.value, "p.yaml", "unknown key")


def test_name_defaults_to_the_file_stem(tmp_path):
    path = write(tmp_path, VALID.replace("name: tiny\n", ""), "my-run.yaml")
    assert load_preset(path).name == "my-run"
    assert read_preset_dict(path)["name"] == "my-run"


def test_frozen_and_defaults(tmp_path):
    config = load_preset(write(tmp_path, VALID, "tiny.yaml"))
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error
        config.epochs = 3
    assert config.device == "auto" and config.precision == "fp32"
    assert config.scheduler.name == "none" and config.early_stopping is None
    assert config.checkpoint.keep_last >= 1


def test_dump_config_round_trips():
    for path in SHIPPED:
        config = load_preset(path)
        again = config_from_dict(load_yaml(dump_config(config)), source="dumped")
        assert again == config
        assert again.to_dict() == config.to_dict()


def test_saved_config_with_every_default_loads_again():
    raw = valid_raw()
    raw["scheduler"] = {"name": "onecycle"}
    config = config_from_dict(raw)
    assert "warmup_steps" in config.to_dict()["scheduler"]
    assert config_from_dict(config.to_dict()) == config


def test_import_model_config():
    raw = valid_raw()
    raw["model"] = {"import": "my_package.models:build", "options": {"width": 3}}
    config = config_from_dict(raw)
    assert config.model.import_target == "my_package.models:build" and config.model.name is None
    assert config.to_dict()["model"]["import"] == "my_package.models:build"


# ---------------------------------------------------------------- overrides


def test_switching_optimizer_drops_what_the_new_one_does_not_take():
    raw = valid_raw()
    raw["optimizer"]["betas"] = [0.8, 0.9]
    switched = apply_overrides(raw, {"optimizer.name": "sgd", "optimizer.momentum": 0.9})
    assert switched["optimizer"] == {"name": "sgd", "lr": 1e-3, "weight_decay": 1e-4, "momentum": 0.9}
    config = config_from_dict(switched)
    assert config.optimizer.name == "sgd" and config.optimizer.momentum == 0.9 and config.optimizer.betas is None
    assert raw["optimizer"]["betas"] == [0.8, 0.9], "the original is not changed"

    back = apply_overrides(config.to_dict(), {"optimizer.name": "adam"})
    assert "momentum" not in back["optimizer"] and "nesterov" not in back["optimizer"]
    assert config_from_dict(back).optimizer.name == "adam"


@pytest.mark.parametrize(("key", "value", "section", "gone"), [
    ("model.name", "linear", "model", "options"),
    ("loss.name", "nll", "loss", "options"),
    ("data.source", "iris", "data", "options"),
])
def test_switching_a_choice_drops_its_options(key, value, section, gone):
    raw = valid_raw()
    raw["loss"]["options"] = {"label_smoothing": 0.1}
    raw["data"]["options"] = {}
    result = apply_overrides(raw, {key: value})
    assert gone not in result[section]
    config_from_dict(result)


def test_same_name_keeps_options():
    raw = valid_raw()
    assert apply_overrides(raw, {"model.name": "mlp"})["model"]["options"] == {"hidden": [16]}


def test_switching_from_import_to_a_named_model():
    raw = valid_raw()
    raw["model"] = {"import": "pkg.mod:make", "options": {"width": 3}}
    result = apply_overrides(raw, {"model.name": "mlp"})
    assert result["model"] == {"name": "mlp"}
    assert config_from_dict(result).model.name == "mlp"


def test_overrides_create_sections_and_set_nested_keys():
    raw = valid_raw()
    result = apply_overrides(raw, {"scheduler.name": "cosine", "scheduler.warmup_steps": 5,
                                   "model.options.dropout": 0.2, "epochs": 7})
    config = config_from_dict(result)
    assert config.scheduler.warmup_steps == 5 and config.model.options["dropout"] == 0.2 and config.epochs == 7


def test_override_through_a_value_is_an_error():
    with pytest.raises(ConfigError) as caught:
        apply_overrides(valid_raw(), {"epochs.value": 3}, source="--set")
    one_line_error(caught.value, "--set", "epochs", "not a section")


def test_override_with_a_bad_value_names_the_field():
    with pytest.raises(ConfigError) as caught:
        load_preset(presets.resolve("digits-mlp"), {"optimizer.lr": -1.0})
    one_line_error(caught.value, "optimizer.lr", "greater than 0")


@pytest.mark.parametrize(("text", "key", "value"), [
    ("optimizer.lr=1e-3", "optimizer.lr", 1e-3),
    ("epochs=5", "epochs", 5),
    ("data.shuffle=false", "data.shuffle", False),
    ("model.options.hidden=[32, 16]", "model.options.hidden", [32, 16]),
    ("device=cuda:1", "device", "cuda:1"),
    ("name= spaced =", "name", "spaced ="),
])
def test_parse_assignment(text, key, value):
    assert parse_assignment(text) == (key, value)


@pytest.mark.parametrize("text", ["no-equals", "=5", "a..b=1", "9key=1", "a b=1"])
def test_parse_assignment_refuses(text):
    with pytest.raises(ConfigError) as caught:
        parse_assignment(text)
    one_line_error(caught.value, "dotted.key=value")


# ---------------------------------------------------------------- fuzzing

_scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30), st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["\u2028", "\x85", "a\nb", "\u202e", "\U0001f600", "\x00", "1e-3", ""]),
    st.sampled_from(["adam", "sgd", "mlp", "cnn", "digits", "mse", "cross_entropy", "cosine", "cpu", "cuda:7",
                     "regression", "classification", "val_r2", "pkg.mod:fn"]),
)
_odd_keys = st.one_of(st.text(min_size=1, max_size=6), st.sampled_from(["a\nb", "\u2028", "x\x85", "\r", "ü", "\t"]))
_values = st.recursive(
    _scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.one_of(_odd_keys, st.integers()), children, max_size=4)),
    max_leaves=12,
)
_KEYS = ["name", "task", "data", "model", "loss", "optimizer", "scheduler", "epochs", "max_steps", "seed",
         "early_stopping", "device", "precision", "grad_clip", "checkpoint", "logging", "compile", "description",
         "data.source", "data.batch_size", "data.val_split", "data.options", "data.options.samples",
         "model.name", "model.import", "model.options", "model.options.hidden", "model.options.channels",
         "loss.name", "loss.options", "optimizer.name", "optimizer.lr", "optimizer.betas", "optimizer.momentum",
         "scheduler.name", "scheduler.warmup_steps", "scheduler.max_lr", "early_stopping.monitor",
         "checkpoint.keep_last", "checkpoint.monitor", "logging.every_ms", "unknown", "optimizer.lrr"]
_BASES = [load_yaml(path.read_text(encoding="utf-8")) for path in SHIPPED] + [load_yaml(VALID)]


def _set(raw: dict, dotted: str, value) -> None:
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def _delete(raw: dict, dotted: str) -> None:
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.get(part)
        if not isinstance(node, dict):
            return
    node.pop(parts[-1], None)


@st.composite
def raw_presets(draw):
    if draw(st.integers(0, 9)) == 0:
        return draw(_values)
    raw = copy.deepcopy(draw(st.sampled_from(_BASES)))
    for _ in range(draw(st.integers(1, 4))):
        key = draw(st.sampled_from(_KEYS))
        action = draw(st.sampled_from(["set", "set", "delete", "extra"]))
        if action == "set":
            _set(raw, key, draw(_values))
        elif action == "delete":
            _delete(raw, key)
        else:
            _set(raw, key + "." + draw(_odd_keys), draw(_values))
    return raw


def _check_one(raw, source="fuzz.yaml"):
    try:
        result = config_from_dict(raw, source=source)
    except ConfigError as error:
        text = str(error)
        assert text and len(text.splitlines()) == 1, repr(text)
        assert text.startswith(source), text
        return None
    assert isinstance(result, RunConfig)
    return result


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=raw_presets())
def test_fuzzed_presets_validate_or_give_one_line(raw, fuzz_counts):
    fuzz_counts["test_fuzzed_presets_validate_or_give_one_line"] += 1
    if _check_one(raw) is not None:
        fuzz_counts["test_fuzzed_presets_validate_or_give_one_line (valid configs)"] += 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from(_BASES), assignments=st.lists(
    st.tuples(st.sampled_from(_KEYS), st.one_of(_scalars.map(str), st.text(max_size=10))), min_size=1, max_size=3))
def test_fuzzed_overrides_validate_or_give_one_line(base, assignments, fuzz_counts):
    fuzz_counts["test_fuzzed_overrides_validate_or_give_one_line"] += 1
    overrides = {}
    for key, text in assignments:
        try:
            parsed_key, value = parse_assignment(f"{key}={text}")
        except ConfigError as error:
            assert len(str(error).splitlines()) == 1
            continue
        overrides[parsed_key] = value
    try:
        raw = apply_overrides(base, overrides, source="--set")
    except ConfigError as error:
        assert len(str(error).splitlines()) == 1
        return
    if _check_one(raw) is not None:
        fuzz_counts["test_fuzzed_overrides_validate_or_give_one_line (valid configs)"] += 1


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(max_size=200), _values.map(lambda value: yaml.safe_dump(value, allow_unicode=True))))
def test_fuzzed_preset_files_validate_or_give_one_line(tmp_path, text, fuzz_counts):
    fuzz_counts["test_fuzzed_preset_files_validate_or_give_one_line"] += 1
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_preset(path)
    except ConfigError as error:
        assert len(str(error).splitlines()) == 1, repr(str(error))
