"""One way to read a value everywhere: an accuracy, a loss and a file's size read the same in the headless
output, `tui-trainer runs` and `checkpoints` and the app's dashboard (binary units: KiB, MiB)."""

from __future__ import annotations

import io

import pytest

from tui_trainer import formatting as fmt
from tui_trainer.engine.events import CheckpointSaved, EpochEnded, RunStarted
from tui_trainer.runs.registry import RunInfo


@pytest.mark.parametrize(("num_bytes", "shown"), [(0, "0 B"), (1023, "1023 B"), (2048, "2.0 KiB"),
                                                  (1_500_000, "1.4 MiB"), (3 * 2**30, "3.0 GiB"),
                                                  (None, "n/a"), (float("nan"), "n/a"), (True, "n/a")])
def test_sizes_are_binary(num_bytes, shown):
    assert fmt.size(num_bytes) == shown


@pytest.mark.parametrize(("name", "value", "shown"), [
    ("val_accuracy", 0.9733, "97.3%"), ("train_accuracy", 1.0, "100.0%"), ("val_loss", 0.012345, "0.01235"),
    ("val_r2", 0.98765, "0.988"), ("val_mae", 12.5, "12.5"), ("val_loss", float("nan"), "nan"),
    ("val_accuracy", None, "n/a"), ("val_loss", "x", "n/a"),
])
def test_a_metric_reads_by_its_kind(name, value, shown):
    assert fmt.metric(name, value) == shown


def test_durations_and_times_never_raise():
    assert fmt.duration(65) == "0:01:05" and fmt.duration(float("inf")) == "n/a" and fmt.duration(-1) == "n/a"
    assert fmt.when(1e300) == "n/a" and fmt.stamp(float("nan")) == "n/a" and fmt.stamp(0) == "n/a"


def started_event(run_dir: str) -> RunStarted:
    return RunStarted(run_id="r", run_dir=run_dir, preset="digits-cnn", task="classification", device="cpu",
                      device_name="CPU", model="cnn", parameters=10, train_samples=100, val_samples=20, epochs=3,
                      steps_per_epoch=2, total_steps=6, start_epoch=1, start_step=0, lr=0.01, config={})


def test_an_accuracy_and_a_size_read_the_same_in_every_view(tmp_path, capsys, monkeypatch):
    from tui_trainer import listing
    from tui_trainer.cli import main
    from tui_trainer.engine import checkpoints
    from tui_trainer.headless import PlainReporter
    from tui_trainer.runs import registry as runinfo
    from tui_trainer.ui.run_view import RunView

    epoch = EpochEnded(epoch=1, step=2, train={"train_loss": 0.5, "train_accuracy": 0.9}, lr=0.01, elapsed_s=1.0,
                       val={"val_loss": 0.1234, "val_accuracy": 0.9733}, is_best=True)
    saved = CheckpointSaved(path=str(tmp_path / "manual.pt"), size_bytes=2048, epoch=1, step=2, reason="manual")

    out = io.StringIO()
    reporter = PlainReporter(out)
    for event in (started_event(str(tmp_path)), epoch, saved):
        reporter(event)
    headless = out.getvalue()
    assert "val_accuracy 97.3%" in headless and "(2.0 KiB, manual)" in headless

    view = RunView(task="classification", epochs=3)
    dashboard = " ".join(line.text for event in (started_event(str(tmp_path)), epoch, saved)
                         for line in view.apply(event))
    assert "acc 97.3%" in dashboard and "(2.0 KiB)" in dashboard

    info = RunInfo(run_id="r", run_dir=str(tmp_path / "r"), state="finished", monitor="val_accuracy", best=0.9733)
    monkeypatch.setattr(runinfo, "list_runs", lambda folder: [info])
    monkeypatch.setattr(listing, "_to_terminal", lambda: False)
    assert main(["runs", "--checkpoint-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.split("\t")[4] == "97.3%"

    monkeypatch.setattr(checkpoints, "list_checkpoints", lambda folder: [checkpoints.CheckpointInfo(
        path=str(tmp_path / "manual.pt"), size_bytes=2048, epoch=1, step=2, val_loss=0.1234, val_accuracy=0.9733)])
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["checkpoints", str(tmp_path)]) == 0
    listed = capsys.readouterr().out
    assert "97.3%" in listed and "2.0 KiB" in listed and "0.1234" in listed and "kB" not in listed
