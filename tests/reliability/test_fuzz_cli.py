"""Fuzzed command lines: each one either runs or exits 2 with one line, never a traceback."""


from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cli_helpers import run_main

FLAGS = ["--epochs", "--max-steps", "--lr", "--optimizer", "--loss", "--model", "--batch-size", "--device",
         "--seed", "--precision"]
SET_KEYS = ["optimizer.lr", "optimizer.momentum", "optimizer.betas", "data.val_split", "data.options.noise",
            "model.options.hidden", "model.options.dropout", "scheduler.name", "scheduler.warmup_steps",
            "early_stopping.patience", "grad_clip", "logging.every_steps", "checkpoint.keep_last", "nested.deep.key",
            "data", "loss.options.label_smoothing"]
values = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "nan", "inf", "-0", "1e-3", "1e400", "true", "null", "[1, 2]", "{a: 1}", "[", "adam",
                     "sgd", "mlp", "cnn", "cpu", "cuda:7", "mps", "bf16", "fp16", "résumé", "🙂", "\x00", "a" * 300]),
    st.text(max_size=20),
)
VALID = {"--epochs": ["1", "2"], "--max-steps": ["1", "5"], "--lr": ["0.01", "1e-3", "3e-4"],
         "--optimizer": ["sgd", "adam", "adamw", "rmsprop"], "--loss": ["cross_entropy", "nll", "bce_with_logits"],
         "--model": ["linear", "mlp"], "--batch-size": ["8", "16", "120"], "--device": ["cpu", "auto"],
         "--seed": ["0", "7", "4294967295"], "--precision": ["fp32", "bf16"]}
flag_pairs = st.lists(
    st.sampled_from(FLAGS).flatmap(
        lambda flag: st.tuples(st.just(flag), st.one_of(st.sampled_from(VALID[flag]), values))),
    max_size=4, unique_by=lambda pair: pair[0])
VALID_SET = {"optimizer.lr": ["0.05"], "optimizer.momentum": ["0.9"], "optimizer.betas": ["[0.9, 0.99]"],
             "data.val_split": ["0.3"], "data.options.noise": ["0.1"], "model.options.hidden": ["[8]"],
             "model.options.dropout": ["0.1"], "scheduler.name": ["cosine", "step", "onecycle", "plateau"],
             "scheduler.warmup_steps": ["2"], "early_stopping.patience": ["2"], "grad_clip": ["1.0"],
             "logging.every_steps": ["1"], "checkpoint.keep_last": ["1"], "nested.deep.key": ["1"], "data": ["1"],
             "loss.options.label_smoothing": ["0.1"]}
set_pairs = st.lists(
    st.sampled_from(SET_KEYS).flatmap(
        lambda key: st.tuples(st.just(key), st.one_of(st.sampled_from(VALID_SET[key]), st.sampled_from(VALID_SET[key]),
                                                      values))),
    max_size=2, unique_by=lambda pair: pair[0])
TRIED = {"count": 0, "ran": 0, "bad_input": 0, "failed": 0}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flags=flag_pairs, sets=set_pairs)
def test_fuzzed_command_lines_run_or_exit_2_with_one_line(tmp_path, flags, sets):
    argv = ["--headless", "--preset", "iris-linear", "--checkpoint-dir", str(tmp_path / "ck")]
    for flag, value in flags:
        argv += [flag, value]
    for key, value in sets:
        argv += ["--set", f"{key}={value}"]
    # A short run whatever the fuzzed numbers say, unless the fuzz itself set these.
    if "--max-steps" not in argv:
        argv += ["--max-steps", "3"]
    if "--epochs" not in argv:
        argv += ["--epochs", "1"]
    code, out, err = run_main(argv)
    TRIED["count"] += 1
    text = out + err
    assert "Traceback" not in text
    if code == 2:
        TRIED["bad_input"] += 1
        assert len(err.strip().splitlines()) == 1, err
    else:
        assert code in (0, 1), (code, text)  # 1: the run itself failed (a huge lr gives a non-finite loss)
        TRIED["ran" if code == 0 else "failed"] += 1


def test_report_fuzz_counts():
    print(f"fuzzed command lines: {TRIED}")
