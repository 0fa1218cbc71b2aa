"""Presets are data, found where they belong: a name only in the preset folders, only regular files, bounded
reads, bounded YAML aliases, no duplicate keys. Every refusal is one line naming the file."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_helpers import ROOT, cli_env
from tui_trainer import presets
from tui_trainer.cli import main
from tui_trainer.config import ConfigError, load_preset
from tui_trainer.launch import LaunchOptions, resolve_config

IRIS = (ROOT / "presets" / "iris-linear.yaml").read_text(encoding="utf-8")
HIJACK = IRIS.replace("name: iris-linear", "name: hijacked")


def one_line(error: BaseException, *fragments: str) -> str:
    text = str(error)
    assert len(text.splitlines()) == 1, text
    for fragment in fragments:
        assert fragment in text, (fragment, text)
    return text


def refused(path: Path, *fragments: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_preset(path)
    return one_line(caught.value, str(path), *fragments)


# ---------------------------------------------------------------- a name is looked up in the preset folders only


@pytest.mark.parametrize("planted", ["digits-cnn", "iris-linear", "mine"])
def test_a_file_in_the_current_folder_does_not_answer_to_a_name(tmp_path, monkeypatch, planted):
    monkeypatch.chdir(tmp_path)
    (tmp_path / planted).write_text(HIJACK, encoding="utf-8")
    if planted == "mine":
        with pytest.raises(ConfigError) as caught:
            presets.resolve(planted)
        one_line(caught.value, "no preset named 'mine'", "read only as a path: './mine'")
    else:
        assert presets.resolve(planted) == presets.shipped_presets_dir() / f"{planted}.yaml"
        assert presets.load_config(planted).name == planted


def test_the_default_preset_is_the_shipped_one_whatever_the_current_folder_holds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits-cnn").write_text(HIJACK, encoding="utf-8")
    (tmp_path / "digits-cnn.yaml").write_text(HIJACK, encoding="utf-8")
    config, path = resolve_config(LaunchOptions())
    assert path == presets.shipped_presets_dir() / "digits-cnn.yaml"
    assert config.name == "digits-cnn"


def test_a_name_in_the_current_folder_is_refused_by_the_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").write_text(HIJACK, encoding="utf-8")
    assert main(["--headless", "--preset", "mine", "--checkpoint-dir", str(tmp_path / "ck")]) == 2
    one_line(capsys.readouterr().err.strip(), "no preset named 'mine'", "'./mine'")
    assert not (tmp_path / "ck").exists()


@pytest.mark.parametrize("given", ["./mine", "mine.yaml", "sub/../mine.yaml", "{tmp}/mine", "mine.yml"])
def test_what_is_a_path_is_read_as_a_file(tmp_path, monkeypatch, given):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    name = Path(given.replace("{tmp}", str(tmp_path))).name
    (tmp_path / name).write_text(HIJACK, encoding="utf-8")
    given = given.replace("{tmp}", str(tmp_path))
    assert presets.resolve(given).resolve() == (tmp_path / name).resolve()
    assert presets.load_config(given).name == "hijacked"


@pytest.mark.parametrize("given", ["a\x00b", "digits-cnn\x00", "a\x00b.yaml", "./a\x00b", "\x00"])
def test_a_nul_byte_in_a_preset_name_is_one_line(tmp_path, monkeypatch, capsys, given):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        presets.resolve(given)
    one_line(caught.value, "NUL byte")
    assert "\x00" not in str(caught.value)
    assert main(["--headless", "--preset", given, "--checkpoint-dir", str(tmp_path / "ck")]) == 2
    err = capsys.readouterr().err
    one_line(err.strip(), "NUL byte")
    assert "Traceback" not in err


@pytest.mark.parametrize("given", ["", " "])
def test_an_empty_name_is_refused(given):
    with pytest.raises(ConfigError) as caught:
        presets.resolve(given)
    one_line(caught.value, "empty")


def test_a_nul_byte_in_a_preset_file_path_is_one_line():
    with pytest.raises(ConfigError) as caught:
        load_preset(Path("a\x00b.yaml"))
    one_line(caught.value, "NUL byte")


# ---------------------------------------------------------------- shipped presets: ours, not site-packages/presets


def _fake_install(site: Path, *, packaged: bool, pyproject: bool) -> None:
    shutil.copytree(ROOT / "tui_trainer", site / "tui_trainer",
                    ignore=shutil.ignore_patterns("__pycache__", "shipped_presets"))
    squatter = site / "presets"
    squatter.mkdir()
    (squatter / "squatter.yaml").write_text(HIJACK.replace("name: hijacked", "name: squatter"), encoding="utf-8")
    if packaged:
        (site / "tui_trainer" / "shipped_presets").mkdir()
        shutil.copy(ROOT / "presets" / "iris-linear.yaml", site / "tui_trainer" / "shipped_presets")
    if pyproject:
        (site / "pyproject.toml").write_text("[project]\nname = 'tui-trainer'\n", encoding="utf-8")


@pytest.mark.parametrize(("packaged", "pyproject", "expected"), [
    (True, False, "tui_trainer/shipped_presets"),
    (True, True, "tui_trainer/shipped_presets"),
    (False, False, "tui_trainer/shipped_presets"),
    (False, True, "presets"),
], ids=["wheel", "wheel-beside-a-pyproject", "no-package", "checkout"])
def test_shipped_presets_come_from_the_package_not_a_folder_beside_it(tmp_path, packaged, pyproject, expected):
    site = tmp_path / "site"
    _fake_install(site, packaged=packaged, pyproject=pyproject)
    code = ("from tui_trainer import presets\n"
            "print(presets.shipped_presets_dir())\n"
            "print(' '.join(entry.name for entry in presets.discover()))\n")
    env = {**cli_env(tmp_path), "PYTHONPATH": str(site)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    shipped, names = result.stdout.splitlines()
    assert Path(shipped) == site / expected
    assert ("squatter" in names.split()) == (expected == "presets")
    assert ("iris-linear" in names.split()) == packaged


def test_shipped_presets_here_are_the_checkouts():
    assert presets.shipped_presets_dir() == ROOT / "presets"


# ---------------------------------------------------------------- only regular files, read with a bound


ENDLESS = {"zero.yaml": "/dev/zero", "random.yml": "/dev/urandom"}
"""Devices that never end a read: only read in a subprocess with a memory limit (so a regression fails, not
the machine)."""


def _special_files(folder: Path, endless: bool = False) -> dict[str, str]:
    """file name -> the error it must be listed with."""
    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / "fifo.yaml")
    (folder / "null.yaml").symlink_to("/dev/null")
    (folder / "folder.yaml").mkdir()
    (folder / "dangling.yaml").symlink_to(folder / "nowhere")
    (folder / "loop.yaml").symlink_to(folder / "loop.yaml")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(folder / "socket.yaml"))
    server.close()
    expected = {"fifo.yaml": "not a regular file", "null.yaml": "not a regular file", "folder.yaml": "is a folder",
                "dangling.yaml": "no such file", "loop.yaml": "cannot read", "socket.yaml": "not a regular file"}
    if endless:
        for name, device in ENDLESS.items():
            (folder / name).symlink_to(device)
            expected[name] = "not a regular file"
    return expected


def _limited_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


@contextlib.contextmanager
def deadline(seconds: float):
    """Fail (instead of hanging the suite) when a read blocks, as an open of a FIFO does."""
    def expire(signum, frame):
        raise TimeoutError(f"blocked for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_special_files_are_listed_with_their_error_and_never_hang(tmp_path):
    folder = tmp_path / "p"
    expected = _special_files(folder, endless=True)
    result = subprocess.run([sys.executable, "-m", "tui_trainer", "presets", "--presets-dir", str(folder), "--json"],
                            capture_output=True, text=True, cwd=tmp_path, env=cli_env(tmp_path), timeout=30,
                            preexec_fn=_limited_memory)
    assert result.returncode == 0, result.stderr[-2000:]
    entries = {entry["name"]: entry for entry in map(json.loads, result.stdout.splitlines())}
    for name, fragment in expected.items():
        entry = entries[Path(name).stem]
        assert entry["error"] and fragment in entry["error"], (name, entry)
        assert str(folder / name) in entry["error"]
    assert entries["digits-cnn"]["error"] is None


def test_special_files_are_refused_when_named(tmp_path, monkeypatch):
    folder = tmp_path / "p"
    expected = _special_files(folder)
    monkeypatch.setenv("TUI_TRAINER_PRESETS", str(folder))
    for name, fragment in expected.items():
        with deadline(5):
            refused(folder / name, fragment)
            with pytest.raises(ConfigError) as caught:
                presets.load_config(Path(name).stem)
        one_line(caught.value, fragment)


def test_a_special_file_hides_the_shipped_preset_of_its_name(tmp_path, monkeypatch):
    """As in the listing: the first folder's entry wins, and the user sees why it cannot be used."""
    folder = tmp_path / "p"
    folder.mkdir()
    os.mkfifo(folder / "digits-cnn.yaml")
    with deadline(5), pytest.raises(ConfigError) as caught:
        presets.load_config("digits-cnn", extra_dir=folder)
    one_line(caught.value, "not a regular file")


def test_a_file_bigger_than_the_bound_is_refused_whatever_its_kind(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text(IRIS + "#" + "x" * 1_100_000 + "\n", encoding="utf-8")
    refused(big, "larger than")
    (tmp_path / "link.yaml").symlink_to(big)
    refused(tmp_path / "link.yaml", "larger than")


# ---------------------------------------------------------------- YAML aliases are bounded


def _laughs(levels: int = 9, width: int = 9, indent: str = "    ") -> str:
    lines = [f"{indent}l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"{indent}l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * width)}]" for n in range(1, levels)]
    return "\n".join(lines) + "\n"


def _mapping_laughs(levels: int = 9) -> str:
    lines = ["    m0: &m0 {a: lol, b: lol, c: lol, d: lol, e: lol, f: lol, g: lol, h: lol, i: lol}"]
    lines += [f"    m{n}: &m{n} {{a: *m{n - 1}, b: *m{n - 1}, c: *m{n - 1}, d: *m{n - 1}, e: *m{n - 1}, "
              f"f: *m{n - 1}, g: *m{n - 1}, h: *m{n - 1}, i: *m{n - 1}}}" for n in range(1, levels)]
    return "\n".join(lines) + "\n"


IMPORTED = """\
task: classification
data: {source: iris}
model:
  import: "somewhere:factory"
  options:
"""
TAIL = "loss: {name: cross_entropy}\n"

BOMBS = {
    "billion-laughs-in-model-options": IMPORTED + _laughs() + TAIL,
    "mapping-laughs": IMPORTED + _mapping_laughs() + TAIL,
    "long-string-reused": (IMPORTED + "    s: &s " + "x" * 200_000 + "\n    t: [" + ", ".join(["*s"] * 100) + "]\n"
                           + TAIL),
    "wide-then-deep": IMPORTED + _laughs(levels=3, width=400) + TAIL,
    "merge-keys": IMPORTED + "    base: &b {" + ", ".join(f"k{i}: {i}" for i in range(300)) + "}\n"
                  + "".join(f"    m{n}: &m{n}\n      <<: [*{'b' if n == 0 else f'm{n - 1}'}]\n      x{n}: 1\n"
                            f"      list{n}: [{', '.join(['*b'] * 400)}]\n" for n in range(3)) + TAIL,
    "top-level-list": _laughs(indent="") + "all: [*l8, *l8]\n",
}


@pytest.mark.parametrize("name", list(BOMBS))
def test_alias_bombs_are_refused_in_one_line(tmp_path, name):
    """Each would expand to gigabytes: refused while its expansion is counted, before it is built."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(BOMBS[name], encoding="utf-8")
    assert path.stat().st_size < 1_000_000
    refused(path, "aliases expand", "refused")


@pytest.mark.parametrize("text", [
    "a: &a [*a]\n",
    "a: &a {b: *a}\n",
    "a: &a [1, [2, {c: *a}]]\n",
    "a: &a {<<: *a}\n",
], ids=["list", "mapping", "nested", "merge"])
def test_an_anchor_used_inside_itself_is_refused(tmp_path, text):
    path = tmp_path / "recursive.yaml"
    path.write_text(IRIS + text, encoding="utf-8")
    refused(path, "used inside itself")


def test_small_aliases_still_work(tmp_path):
    path = tmp_path / "aliases.yaml"
    path.write_text("x-sizes: &sizes [8, 4]\nx-adam: &adam {name: adam, lr: 0.01}\n"
                    "task: classification\ndata: {source: iris}\nloss: {name: cross_entropy}\n"
                    "model: {name: mlp, options: {hidden: *sizes}}\noptimizer: *adam\n", encoding="utf-8")
    raw = presets.load(str(path))[1]
    assert raw["model"]["options"]["hidden"] == [8, 4] and raw["optimizer"]["lr"] == 0.01


def test_a_command_line_value_may_not_bomb_either():
    from tui_trainer.yaml_io import parse_scalar

    bomb = "[" + ", ".join(["*a"] * 2) + "]"
    assert parse_scalar("&a [*a]") == "&a [*a]"
    assert isinstance(parse_scalar(bomb), str)


# ---------------------------------------------------------------- a key twice is an error


@pytest.mark.parametrize(("text", "expected"), [
    ("task: classification\ntask: regression\n", "duplicate key 'task' at line 2"),
    ("optimizer:\n  name: adam\n  lr: 0.1\n  lr: 0.2\n", "duplicate key 'lr' at line 4"),
    ("optimizer: {lr: 0.1, name: adam, lr: 0.2}\n", "duplicate key 'lr' at line 1"),
    ("data:\n  source: iris\n  options:\n    a:\n      b: 1\n      b: 2\n", "duplicate key 'b' at line 6"),
    ("model:\n  options:\n    hidden: [{x: 1, x: 2}]\n", "duplicate key 'x' at line 3"),
    ("x: &b {lr: 1}\noptimizer:\n  <<: {lr: 0.1, lr: 0.2}\n", "duplicate key 'lr' at line 3"),
    ("1: a\n1.0: b\n", "duplicate key 1.0 at line 2"),
    ("? [a, b]\n: 1\nc: 2\nc: 3\n", "duplicate key 'c' at line 4"),
], ids=["top", "nested", "flow", "deep", "in-a-list", "in-a-merge", "equal-numbers", "after-a-complex-key"])
def test_duplicate_keys_are_an_error(tmp_path, text, expected):
    path = tmp_path / "dup.yaml"
    path.write_text(text, encoding="utf-8")
    refused(path, expected)


def test_duplicate_key_message_is_as_the_review_wrote_it(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("task: classification\ndata: {source: iris}\nmodel: {name: linear}\nloss: {name: cross_entropy}\n"
                    "optimizer:\n  name: adam\n  lr: 0.1\n  lr: 0.2\n", encoding="utf-8")
    assert refused(path) == f"{path}: duplicate key 'lr' at line 8"


def test_a_merged_key_may_still_be_overridden(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("x-defaults: &defaults {name: adam, lr: 0.5}\noptimizer:\n  <<: *defaults\n  lr: 0.25\n",
                    encoding="utf-8")
    assert presets.load(str(path))[1]["optimizer"] == {"name": "adam", "lr": 0.25}


def test_a_duplicate_anchor_says_so(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text("a: &x 1\nb: &x 2\n", encoding="utf-8")
    refused(path, "YAML syntax error at line 2", "duplicate anchor 'x'")


def test_yaml_1_2_floats_still_read():
    from tui_trainer.yaml_io import load_yaml

    assert load_yaml("lr: 1e-3\nwd: 1E-4\nbig: +2e5")["lr"] == 1e-3
    assert load_yaml("{a: 1e-3}") == {"a": 1e-3}


@pytest.mark.parametrize("where", ["huge: {n}\n", "nested:\n  options: {{x: {n}}}\n", "listed: [1, -{n}]\n"])
def test_an_integer_too_long_for_python_is_one_line(tmp_path, where, capsys):
    """Python refuses to read integers of more than 4300 digits (a ValueError from inside the YAML reader)."""
    from tui_trainer.cli import main

    huge = "1" * 5000
    path = tmp_path / "huge.yaml"
    path.write_text(IRIS + where.format(n=huge), encoding="utf-8")
    refused(path, "digits")
    assert main(["presets", "--presets-dir", str(tmp_path)]) == 0  # the listing survives it
    assert "digits" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--epochs", "1" * 5000], ["--set", "epochs=" + "1" * 5000],
                                  ["--set", "data.options.x=" + "9" * 5000]])
def test_a_flag_with_an_integer_too_long_for_python_is_one_line(argv, capsys):
    from tui_trainer.cli import main

    assert main(["--headless", "--preset", "iris-linear", *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
