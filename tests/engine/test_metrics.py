"""Metric series for charts (bounded, decimated, extremes kept) and metrics.jsonl on disk."""

from __future__ import annotations

import json
import math
import random

from tui_trainer.engine.metrics import MetricsLog, read_metrics
from tui_trainer.ui.series import Series


def filled(count: int, max_points: int = 256, seed: int = 0) -> tuple[Series, list[float]]:
    rng = random.Random(seed)
    series, values = Series(max_points=max_points), []
    for step in range(count):
        value = math.sin(step / 500) + rng.random() * 0.1
        values.append(value)
        series.append(step, value)
    return series, values


def test_short_series_is_shown_whole():
    series = Series()
    for step in range(5):
        series.append(step, step * 2.0)
    xs, ys = series.view(100)
    assert sorted(set(xs)) == [0, 1, 2, 3, 4] and sorted(set(ys)) == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert len(series) == 5 and series.last == (4, 8.0)


def test_memory_and_view_stay_bounded():
    series, _ = filled(200_000, max_points=256)
    assert len(series) == 200_000
    assert len(series._xs) <= 2 * series.max_buckets + 4
    for wanted in (50, 120, 500):
        xs, ys = series.view(wanted)
        assert len(xs) == len(ys) <= wanted + 1
        assert xs == sorted(xs)


def test_extremes_survive_decimation():
    rng = random.Random(1)
    series = Series(max_points=64)
    for step in range(50_000):
        value = rng.random()
        if step == 12_345:
            value = 99.0
        if step == 40_001:
            value = -99.0
        series.append(step, value)
    xs, ys = series.view(40)
    assert max(ys) == 99.0 and xs[ys.index(99.0)] == 12_345
    assert min(ys) == -99.0 and xs[ys.index(-99.0)] == 40_001


def test_the_newest_point_is_always_in_the_view():
    for count in (7, 50, 333, 1001, 5000, 12_345):
        series = Series(max_points=16)
        for step in range(count):
            series.append(step, [10.0, 0.0, 5.0][step % 3])
        xs, ys = series.view(16)
        assert (xs[-1], ys[-1]) == series.last == (count - 1, [10.0, 0.0, 5.0][(count - 1) % 3]), count


def test_non_finite_values_are_skipped_and_version_moves():
    series = Series()
    series.append(1, 0.5)
    version = series.version
    series.append(2, float("nan"))
    series.append(3, float("inf"))
    assert series.version == version and len(series) == 1
    series.append(4, 0.25)
    assert series.version == version + 1 and series.view(10)[1][-1] == 0.25


def test_view_cost_does_not_grow_with_the_run():
    small, _ = filled(1_000, max_points=512)
    large, _ = filled(300_000, max_points=512)
    assert len(large._xs) <= 2 * large.max_buckets + 4
    assert len(large.view(400)[0]) <= 401 and len(small.view(400)[0]) <= 401


def test_metrics_log_appends_one_object_per_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path)
    log.write({"type": "progress", "step": 1, "train_loss": 0.5})
    log.write({"type": "epoch_ended", "epoch": 1, "val": {"val_loss": float("nan")}})
    log.close()
    log = MetricsLog(path)
    log.write({"type": "progress", "step": 2})
    log.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 and all(json.loads(line)["type"] for line in lines)
    records = read_metrics(path)
    assert [record.get("step") for record in records] == [1, None, 2]
    assert math.isnan(records[1]["val"]["val_loss"])


def test_a_line_cut_short_by_a_crash_is_skipped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"type": "progress", "step": 1}\n{"type": "progress", "st', encoding="utf-8")
    assert read_metrics(path) == [{"type": "progress", "step": 1}]
    assert read_metrics(tmp_path / "missing.jsonl") == []


def test_the_run_history_stays_bounded_and_its_json_matches_its_records(monkeypatch):
    """A checkpoint carries the run's history for its charts after a resume: past the limit every other
    progress record goes, epochs stay, and the JSON a checkpoint stores is exactly the records kept."""
    from tui_trainer.engine import history as history_module

    monkeypatch.setattr(history_module, "HISTORY_LIMIT", 100)
    history = history_module.RunHistory()
    for step in range(1, 301):
        line = history.add({"type": "progress", "step": step, "train_loss": 1 / step})
        assert json.loads(line)["step"] == step
        if step % 50 == 0:
            history.add({"type": "epoch_ended", "step": step, "val": {"val_loss": math.nan}})
    assert len(history.records) <= 101
    assert [record for record in history.records if record["type"] == "epoch_ended"] == [
        {"type": "epoch_ended", "step": step, "val": {"val_loss": math.nan}} for step in range(50, 301, 50)]
    assert history.records[-1]["step"] == 300
    decoded = json.loads(history.to_json())
    assert json.dumps(decoded) == json.dumps(history.records)
    again = history_module.RunHistory()
    again.replace(decoded)
    assert again.to_json() == history.to_json()


def test_reading_metrics_skips_what_is_no_record_of_ours(tmp_path):
    from tui_trainer.engine.metrics import MAX_RECORD_CHARS, read_metrics

    path = tmp_path / "metrics.jsonl"
    lines = ['{"type": "progress", "step": 1}', "[1, 2]", '{"step": ' + "1" * 5000 + "}", "[" * 100_000,
             "x" * (MAX_RECORD_CHARS + 10), '{"cut short', '{"type": "progress", "step": 2}']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert read_metrics(path) == [{"type": "progress", "step": 1}, {"type": "progress", "step": 2}]


def test_reading_metrics_reads_only_a_regular_file(tmp_path):
    import os

    from tui_trainer.engine.metrics import read_metrics

    os.mkfifo(tmp_path / "fifo.jsonl")
    assert read_metrics(tmp_path / "fifo.jsonl") == []  # no writer: a blocking open would hang
    (tmp_path / "zero.jsonl").symlink_to("/dev/zero")
    assert read_metrics(tmp_path / "zero.jsonl") == []
    assert read_metrics(tmp_path / "missing.jsonl") == []
