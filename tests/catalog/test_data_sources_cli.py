"""A preset naming the user's own file trains headless; a bad file is one line, exit 2, no traceback and no run
folder."""

from __future__ import annotations

import numpy as np
import pytest

from tests.cli_helpers import run_main

pandas = pytest.importorskip("pandas")


def write_preset(tmp_path, data: str, model: str = "{name: mlp, options: {hidden: [16]}}") -> str:
    path = tmp_path / "mine.yaml"
    path.write_text(f"task: classification\ndata: {data}\nmodel: {model}\nloss: {{name: cross_entropy}}\n"
                    "epochs: 2\ndevice: cpu\n", encoding="utf-8")
    return str(path)


@pytest.fixture
def csv_file(tmp_path):
    rng = np.random.default_rng(0)
    frame = pandas.DataFrame({"x1": rng.normal(size=80), "x2": rng.normal(size=80),
                              "shop": rng.choice(["north", "south"], 80)})
    frame["bought"] = np.where(frame["x1"] + frame["x2"] > 0, "yes", "no")
    path = tmp_path / "sales.csv"
    frame.to_csv(path, index=False)
    return path


def test_a_csv_preset_trains_headless(tmp_path, csv_file):
    preset = write_preset(tmp_path, f"{{source: csv, batch_size: 16, options: {{path: '{csv_file}', "
                                    "target: bought}}")
    code, out, err = run_main(["--headless", "--preset", preset, "--checkpoint-dir", str(tmp_path / "runs")])
    assert code == 0, (out, err)
    assert "val_accuracy" in out and list((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("options, fragments", [
    ("{path: missing.csv, target: bought}", ["data.options.path", "missing.csv", "no such file"]),
    ("{path: SALES, target: price}", ["data.options.target", "'price' is not a column", "bought"]),
    ("{path: BROKEN, target: bought}", ["data.options.path", "cannot read as CSV"]),
    ("{target: bought}", ["mine.yaml", "data.options", "give path, or both train and val"]),
])
def test_bad_csv_input_is_one_line_and_no_run_folder(tmp_path, csv_file, monkeypatch, options, fragments):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.csv").write_text('a,b\n1,2,3\n"never closed\n', encoding="utf-8")
    options = options.replace("SALES", str(csv_file)).replace("BROKEN", str(tmp_path / "broken.csv"))
    preset = write_preset(tmp_path, f"{{source: csv, options: {options}}}")
    code, out, err = run_main(["--headless", "--preset", preset, "--checkpoint-dir", str(tmp_path / "runs")])
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in out + err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_bad_image_folder_and_npz_are_one_line(tmp_path):
    (tmp_path / "flat").mkdir()
    np.savez(tmp_path / "d.npz", a=np.zeros(3))
    for data, fragment in [(f"{{source: image_folder, options: {{path: '{tmp_path / 'flat'}'}}}}",
                            "no class subfolders"),
                           (f"{{source: arrays, options: {{path: '{tmp_path / 'd.npz'}'}}}}", "needs arrays x and y")]:
        preset = write_preset(tmp_path, data, model="{name: linear}")
        code, out, err = run_main(["--headless", "--preset", preset, "--checkpoint-dir", str(tmp_path / "runs")])
        assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err, (out, err)
        assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_missing_extra_names_the_pip_command(tmp_path, csv_file, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pandas", None)  # as if the data extra were not installed
    preset = write_preset(tmp_path, f"{{source: csv, options: {{path: '{csv_file}', target: bought}}}}")
    code, _, err = run_main(["--headless", "--preset", preset, "--checkpoint-dir", str(tmp_path / "runs")])
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "pip install 'tui-trainer[data]'" in err


def test_a_cnn_on_arrays_that_are_not_images_is_one_line(tmp_path):
    np.savez(tmp_path / "flat.npz", x=np.zeros((20, 4), dtype="float32"), y=np.arange(20) % 2)
    preset = write_preset(tmp_path, f"{{source: arrays, batch_size: 4, options: {{path: '{tmp_path / 'flat.npz'}'}}}}",
                          model="{name: cnn}")
    code, out, err = run_main(["--headless", "--preset", preset, "--checkpoint-dir", str(tmp_path / "runs")])
    assert code == 2 and len(err.strip().splitlines()) == 1, (out, err)
    assert "model.name" in err and "needs images [channels, height, width]" in err and "[4]" in err
