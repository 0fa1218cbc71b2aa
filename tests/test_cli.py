import json
import subprocess
import sys
import textwrap

import pytest

from tests.cli_helpers import ROOT, assert_one_line_error, run_cli
from tui_trainer.cli import main

SHIPPED = ["cifar10-cnn", "diabetes-regression", "digits-cnn", "digits-mlp", "fashion-mnist-cnn", "iris-linear",
           "mnist-cnn", "sine-regression", "spirals-mlp"]


def test_help_is_instant_and_imports_neither_torch_nor_textual():
    code = textwrap.dedent("""
        import sys
        from tui_trainer.cli import main
        try:
            main(["--help"])
        except SystemExit as exit:
            assert exit.code == 0
        main(["presets"])
        assert "torch" not in sys.modules, "torch imported"
        assert "textual" not in sys.modules, "textual imported"
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "--headless" in result.stdout
    assert "digits-cnn" in result.stdout


def test_presets_lists_shipped_and_user_presets(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    user = tmp_path / "mine"
    user.mkdir()
    (user / "my-run.yaml").write_text((ROOT / "presets" / "iris-linear.yaml").read_text().replace(
        "name: iris-linear", "name: my-run"))
    (user / "broken.yaml").write_text("task: classification\ndata: {source: digits}\nmodel: {name: resnet}\n"
                                         "loss: {name: cross_entropy}\n")
    assert main(["presets", "--presets-dir", str(user), "--json"]) == 0
    entries = {entry["name"]: entry for entry in map(json.loads, capsys.readouterr().out.splitlines())}
    assert set(SHIPPED) <= set(entries)
    assert entries["my-run"]["error"] is None
    assert "model.name" in entries["broken"]["error"]
    assert main(["presets", "--presets-dir", str(user)]) == 0
    table = capsys.readouterr().out
    assert "my-run" in table and "invalid" in table


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--lr", "-1"], ["--lr", "optimizer.lr", "greater than 0", "-1"]),
        (["--lr", "abc"], ["--lr", "optimizer.lr", "'abc'"]),
        (["--lr", "0"], ["optimizer.lr", "greater than 0"]),
        (["--epochs", "0"], ["--epochs", "epochs"]),
        (["--epochs", "ten"], ["--epochs", "'ten'"]),
        (["--batch-size", "-5"], ["--batch-size", "data.batch_size"]),
        (["--model", "resnet"], ["--model", "model.name", "'resnet'", "mlp"]),
        (["--optimizer", "adamm"], ["--optimizer", "did you mean 'adam'"]),
        (["--loss", "mse"], ["--loss", "loss.name", "does not fit a classification task", "cross_entropy"]),
        (["--device", "tpu"], ["--device", "'tpu'", "cuda:N"]),
        (["--device", "cuda:0"], ["device", "no CUDA GPU"]),
        (["--set", "optimizer.nme=adam"], ["optimizer.nme", "did you mean 'name'"]),
        (["--set", "no-equals-sign"], ["--set", "dotted.key=value"]),
        (["--set", "scheduler.name=exponential"], ["scheduler.name", "'exponential'", "cosine"]),
        (["--preset", "nope"], ["no preset named 'nope'", "digits-cnn"]),
        (["--preset", "digits-cmn"], ["did you mean 'digits-cnn'"]),
        (["--preset", "missing.yaml"], ["missing.yaml", "no such file"]),
        (["--resume", "missing.pt"], ["missing.pt", "no such file"]),
        (["--bogus"], ["unrecognized arguments: --bogus"]),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, args, fragments):
    result = run_cli(["--headless", "--preset", "iris-linear", "--checkpoint-dir", str(tmp_path / "ck"), *args],
                     tmp_path)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "ck").exists() or not any((tmp_path / "ck").iterdir())


BROKEN_PRESETS = {
    "syntax.yaml": ("task: [classification\n", ["syntax.yaml", "YAML syntax error", "line"]),
    "types.yaml": ("task: classification\ndata: {source: iris, batch_size: many}\nmodel: {name: linear}\n"
                   "loss: {name: cross_entropy}\n", ["types.yaml", "data.batch_size", "'many'"]),
    "unknown-key.yaml": ("task: classification\ndata: {source: iris}\nmodel: {name: linear}\n"
                         "loss: {name: cross_entropy}\nepoch: 3\n", ["unknown-key.yaml", "epoch", "'epochs'"]),
    "optimizer.yaml": ("task: classification\ndata: {source: iris}\nmodel: {name: linear}\n"
                       "loss: {name: cross_entropy}\noptimizer: {name: lion}\n",
                       ["optimizer.name", "'lion'", "adamw"]),
    "lr.yaml": ("task: classification\ndata: {source: iris}\nmodel: {name: linear}\n"
                "loss: {name: cross_entropy}\noptimizer: {name: sgd, lr: -0.1}\n", ["optimizer.lr", "-0.1"]),
    "misfit.yaml": ("task: regression\ndata: {source: sine}\nmodel: {name: mlp}\nloss: {name: cross_entropy}\n",
                    ["loss.name", "regression", "mse"]),
    "dataset.yaml": ("task: classification\ndata: {source: imagenet}\nmodel: {name: mlp}\n"
                     "loss: {name: cross_entropy}\n", ["data.source", "'imagenet'", "digits"]),
    "empty.yaml": ("", ["empty.yaml", "empty"]),
    "list.yaml": ("- a\n- b\n", ["list.yaml", "mapping"]),
    "binary.yaml": (b"\xff\xfe\x00bad".decode("latin-1"), ["binary.yaml"]),
}


@pytest.mark.parametrize("name", sorted(BROKEN_PRESETS))
def test_broken_preset_files_exit_2_with_one_line(tmp_path, name):
    text, fragments = BROKEN_PRESETS[name]
    path = tmp_path / name
    path.write_bytes(text.encode("latin-1") if name == "binary.yaml" else text.encode())
    result = run_cli(["--headless", "--preset", str(path)], tmp_path)
    assert_one_line_error(result, *fragments)


def test_json_needs_headless(tmp_path):
    assert_one_line_error(run_cli(["--json"], tmp_path), "--json goes with --headless")


def test_checkpoints_of_a_missing_folder_is_an_error(tmp_path):
    result = run_cli(["checkpoints", str(tmp_path / "nowhere")], tmp_path)
    assert result.returncode == 2
    assert "no such folder" in result.stdout + result.stderr


def test_checkpoints_lists_unreadable_files_with_their_reason(tmp_path, capsys):
    run_dir = tmp_path / "run-1"
    run_dir.mkdir()
    (run_dir / "notes.pt").write_text("hello")
    (run_dir / "empty.pt").write_bytes(b"")
    assert main(["checkpoints", str(tmp_path), "--json"]) == 0
    listed = {json.loads(line)["path"].rsplit("/", 1)[1]: json.loads(line)
              for line in capsys.readouterr().out.splitlines()}
    assert "not a checkpoint" in listed["notes.pt"]["error"]
    assert "empty" in listed["empty.pt"]["error"]


@pytest.mark.parametrize(("args", "flag"), [(["--lr", "abc"], "--lr"), (["--epochs", "0"], "--epochs"),
                                             (["--set", "optimizer.lr=-1"], "--set optimizer.lr")])
def test_the_app_blames_the_flag_not_the_preset_file(capsys, args, flag):
    """Before the app opens, as headless does: the bad value came from the flag, not from the preset."""
    assert main(["--preset", "iris-linear", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tui-trainer: error: {flag}:"), err
    assert "iris-linear.yaml" not in err and len(err.strip().splitlines()) == 1
