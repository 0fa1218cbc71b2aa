"""The shipped examples run offline: each script writes its data, and its preset trains on it headless."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.cli_helpers import ROOT, run_main

EXAMPLES = ROOT / "examples"


@pytest.mark.parametrize("script, preset, written", [
    ("csv-classification/make_data.py", "csv-classification/churn.yaml", "customers.csv"),
    ("image-folder/make_images.py", "image-folder/shapes.yaml", "shapes"),
])
def test_an_example_writes_its_data_and_trains(tmp_path, script, preset, written):
    pytest.importorskip("pandas")
    pytest.importorskip("PIL")
    target = tmp_path / written
    subprocess.run([sys.executable, str(EXAMPLES / script), str(target)], check=True, capture_output=True,
                   timeout=120)
    assert target.exists()
    code, out, err = run_main(["--headless", "--preset", str(EXAMPLES / preset), "--epochs", "1",
                               "--set", f"data.options.path={target}", "--checkpoint-dir", str(tmp_path / "runs")])
    assert code == 0, (out, err)
    assert "val_accuracy" in out
