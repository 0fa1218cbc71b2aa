"""What a short headless run costs besides training, cut without losing anything: the progress bar is redrawn
at most ten times a second by progress alone while every line is still printed; Python's garbage collector
waits while a run sets up, runs while it trains, and skips its last pass at exit; and the run's files are all
there, whole, at the end."""

from __future__ import annotations

import gc
import io
import subprocess
import sys
import textwrap

import pytest

from tui_trainer.engine.checkpoints import TEMP_PREFIX, check_resumable, load_checkpoint
from tui_trainer.engine.events import EpochEnded, Progress, RunFinished, RunStarted
from tui_trainer.engine.metrics import read_metrics
from tui_trainer.headless import RichReporter, run_headless
from tui_trainer.launch import LaunchOptions
from tui_trainer.process_gc import RunCollection, skip_pass_at_exit
from tui_trainer.runs.registry import load_run_info


@pytest.fixture
def collector():
    """The test process's collector as it was, whatever a failing test left."""
    enabled = gc.isenabled()
    gc.unfreeze()
    yield
    gc.unfreeze()
    if enabled:
        gc.enable()


# ---------------------------------------------------------------- the progress bar


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def started(epochs: int, steps_per_epoch: int) -> RunStarted:
    return RunStarted(run_id="run", run_dir="/ck/run", preset="tiny", task="classification", device="cpu",
                      device_name="cpu", model="linear", parameters=1, train_samples=8, val_samples=2, epochs=epochs,
                      steps_per_epoch=steps_per_epoch, total_steps=epochs * steps_per_epoch, start_epoch=1,
                      start_step=0, lr=0.1, config={})


def progress(epoch: int, step: int, steps_per_epoch: int, epochs: int) -> Progress:
    return Progress(epoch=epoch, step=step, epoch_step=step - (epoch - 1) * steps_per_epoch,
                    steps_per_epoch=steps_per_epoch, total_steps=epochs * steps_per_epoch, train_loss=0.5,
                    train_accuracy=0.75, lr=0.1, samples_per_s=1000.0, elapsed_s=1.0, eta_s=1.0)


def rich_reporter(clock: Clock) -> tuple[RichReporter, io.StringIO, list[int]]:
    from rich.console import Console

    out = io.StringIO()
    reporter = RichReporter(Console(file=out, force_terminal=True, color_system=None, width=120), clock=clock)
    redraws: list[int] = []
    refresh = reporter.progress.refresh
    reporter.progress.refresh = lambda: (redraws.append(1), refresh())[1]  # type: ignore[method-assign]
    return reporter, out, redraws


def test_a_run_of_tiny_epochs_prints_every_epoch_line_with_a_few_redraws_of_the_bar():
    clock = Clock()
    reporter, out, redraws = rich_reporter(clock)
    epochs, steps = 60, 4
    reporter(started(epochs, steps))
    for epoch in range(1, epochs + 1):
        for step in range(1, steps + 1):
            reporter(progress(epoch, (epoch - 1) * steps + step, steps, epochs))
            clock.now += 0.0005  # 2,000 events a second
        reporter(EpochEnded(epoch=epoch, step=epoch * steps, train={"train_loss": 0.5}, val={"val_loss": 0.5},
                            lr=0.1, elapsed_s=1.0, is_best=False))
    shown = out.getvalue()
    assert all(f"epoch {epoch}/{epochs} " in shown for epoch in range(1, epochs + 1))
    assert len(redraws) <= 3, "240 progress events in 0.12 s redraw the bar a few times, not 240"


def test_progress_redraws_the_bar_once_a_tenth_of_a_second_has_passed():
    clock = Clock()
    reporter, out, redraws = rich_reporter(clock)
    reporter(started(2, 50))
    before = len(redraws)
    reporter(progress(1, 10, 50, 2))
    assert len(redraws) == before
    clock.now += RichReporter.REDRAW_EVERY_S * 1.5
    reporter(progress(1, 20, 50, 2))
    assert len(redraws) == before + 1
    assert "20/100" in out.getvalue(), "the bar shows the step of the progress that redrew it"
    reporter(RunFinished(state="finished", epoch=2, step=100, elapsed_s=1.0, best={}, last={}, best_epoch=None,
                         checkpoint=None, message=""))


# ---------------------------------------------------------------- the garbage collector


def test_the_collector_waits_while_a_run_sets_up_and_runs_again_once_it_trains(collector):
    gc.enable()
    with RunCollection() as collection:
        assert not gc.isenabled()
        made = [{"setup": index} for index in range(1000)]
        collection.training_started()
        assert gc.isenabled()
        assert gc.get_freeze_count() >= len(made), "what setting up made is out of later passes"
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0, "the run's end thaws it: a caller that goes on collects as before"


def test_a_run_that_fails_to_set_up_leaves_the_collector_running(collector):
    gc.enable()
    frozen = gc.get_freeze_count()
    with pytest.raises(ValueError), RunCollection():
        raise ValueError("bad preset")
    assert gc.isenabled() and gc.get_freeze_count() == frozen


def test_a_collector_the_user_turned_off_stays_off(collector):
    gc.disable()
    with RunCollection() as collection:
        collection.training_started()
    assert not gc.isenabled()


def test_the_last_pass_at_exit_is_skipped_and_handlers_registered_before_still_run(tmp_path):
    script = textwrap.dedent("""
        import atexit, gc
        atexit.register(lambda: print("frozen at exit:", gc.get_freeze_count() > 0, flush=True))
        from tui_trainer.process_gc import skip_pass_at_exit
        before = atexit._ncallbacks()
        skip_pass_at_exit()
        skip_pass_at_exit()
        print("registered once:", atexit._ncallbacks() == before + 1)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert "registered once: True" in done.stdout
    assert "frozen at exit: True" in done.stdout


def test_a_headless_run_sets_up_with_the_collector_paused_and_trains_with_it_running(make_config, tmp_path,
                                                                                     monkeypatch, collector):
    from tui_trainer.engine.trainer import Trainer

    seen: dict[str, object] = {}
    setup, train = Trainer.setup, Trainer._train

    def watched_setup(self):
        seen["setup"] = gc.isenabled()
        setup(self)

    def watched_train(self):
        seen["train"] = gc.isenabled()
        seen["frozen"] = gc.get_freeze_count() > 100_000  # torch and the rest, not just a few
        return train(self)

    monkeypatch.setattr(Trainer, "setup", watched_setup)
    monkeypatch.setattr(Trainer, "_train", watched_train)
    gc.enable()
    skip_pass_at_exit()  # as run_headless does: once per process
    code = run_headless(LaunchOptions(preset="iris-linear", overrides=_overrides(tmp_path, epochs=2)),
                        out=io.StringIO())
    assert code == 0
    assert seen == {"setup": False, "train": True, "frozen": True}
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_a_headless_run_that_cannot_start_leaves_the_collector_running(tmp_path, collector):
    gc.enable()
    code = run_headless(LaunchOptions(preset=str(tmp_path / "missing.yaml")), out=io.StringIO())
    assert code != 0 and gc.isenabled()


# ---------------------------------------------------------------- nothing less written


def _overrides(tmp_path, **extra) -> dict:
    return {"checkpoint.dir": str(tmp_path / "checkpoints"), "device": "cpu", **extra}


def test_a_short_headless_run_still_writes_every_record_and_whole_checkpoints(tmp_path, collector):
    out = io.StringIO()
    code = run_headless(LaunchOptions(preset="iris-linear", overrides=_overrides(tmp_path, epochs=12)), out=out)
    assert code == 0, out.getvalue()
    (run_dir,) = (tmp_path / "checkpoints").iterdir()
    names = sorted(path.name for path in run_dir.iterdir())
    assert not [name for name in names if name.startswith(TEMP_PREFIX)], names
    assert {"epoch-0010.pt", "best.pt", "last.pt", "metrics.jsonl", "config.yaml", "run.json"} <= set(names)
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [record["epoch"] for record in records if record["type"] == "epoch_ended"] == list(range(1, 13))
    assert records[-1]["type"] == "epoch_ended" and records[-1]["step"] == 12 * 8
    for name in ("epoch-0010.pt", "best.pt", "last.pt"):
        payload = load_checkpoint(run_dir / name)
        history = check_resumable(run_dir / name, payload)
        assert payload["meta"]["epoch"] == (10 if name == "epoch-0010.pt" else payload["meta"]["epoch"])
        assert len([record for record in history if record["type"] == "epoch_ended"]) == payload["meta"]["epoch"]
    assert load_checkpoint(run_dir / "last.pt")["meta"]["step"] == 12 * 8
    info = load_run_info(run_dir)
    assert info.state == "finished" and info.epoch == 12 and info.last_checkpoint == str(run_dir / "last.pt")
