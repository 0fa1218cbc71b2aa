"""The app's run lifecycle as plain state, without Textual: what is shown, what is starting, what comes next."""

from __future__ import annotations

import threading

from tests.ui.fake_handle import ScriptedRun, run_started
from tui_trainer.engine.controls import Stop
from tui_trainer.runs.registry import RunInfo
from tui_trainer.ui.lifecycle import AttachTo, BackToSetup, Exit, Lifecycle, OnLeave, OnQuit, OnStarted, Phase


def in_app(**kwargs) -> ScriptedRun:
    return ScriptedRun(notify=lambda: None, **kwargs)


def background(**kwargs) -> ScriptedRun:
    return ScriptedRun(notify=lambda: None, ends_with_app=False, can_go_on_alone=True, **kwargs)


def started(run: ScriptedRun) -> ScriptedRun:
    run.on_event(run_started(run_id=run.engine.run_id, run_dir=run.run_dir))  # set up: a stop now saves last.pt
    return run


def info(name: str = "r1") -> RunInfo:
    return RunInfo(run_id=name, run_dir=f"/runs/{name}", pid=4242, state="running")


def test_a_run_is_shown_then_ends_and_what_comes_next_runs_once():
    runs = Lifecycle()
    run = started(in_app())
    runs.opened(run, from_setup=True)
    assert runs.phase is Phase.SHOWING and runs.live is run and runs.steerable is run and runs.from_setup
    assert runs.busy() == "A run is still stopping; try again in a moment."
    runs.end(BackToSetup())
    assert runs.phase is Phase.ENDING
    run.finished.set()
    assert runs.live is None and runs.busy() is None
    assert runs.worker_ended(run) == BackToSetup() and runs.phase is Phase.ENDED
    assert runs.worker_ended(run) is None, "the continuation runs once"
    runs.back_to_setup()
    assert runs.phase is Phase.SETUP and runs.handle is None and runs.handles == [run]


def test_an_old_runs_worker_ending_does_not_take_the_shown_runs_continuation():
    runs = Lifecycle()
    old, new = in_app(), in_app()
    runs.opened(old)
    runs.opened(new)
    runs.end(AttachTo("/runs/other"))
    assert runs.worker_ended(old) is None and runs.then == AttachTo("/runs/other")


def test_a_stopping_run_takes_no_commands_and_says_why():
    runs = Lifecycle()
    run = started(in_app())
    runs.opened(run)
    assert runs.unavailable("pause") is None
    run.stop("new run")
    assert runs.steerable is None and runs.live is run
    assert runs.unavailable("pause") == "The run is stopping: nothing to pause."
    run.finished.set()
    assert runs.unavailable("save") == "No run is training: nothing to save."


def test_quitting_asks_what_the_shown_run_calls_for():
    runs = Lifecycle()
    assert runs.on_quit() is OnQuit.EXIT
    own = started(in_app())
    runs.opened(own)
    assert runs.on_quit() is OnQuit.CONFIRM_STOP
    runs.opened(started(background()))
    assert runs.on_quit() is OnQuit.LEAVE_OR_STOP
    runs.live.stop("save and stop")
    assert runs.on_quit() is OnQuit.ALREADY_STOPPING


def test_leaving_saves_a_run_that_ends_with_the_app_and_lets_a_background_run_go_on():
    runs = Lifecycle()
    own = started(in_app())
    runs.opened(own)
    assert runs.leave("quit") is OnLeave.WAIT_FOR_SAVE
    assert runs.leaving and runs.then == Exit() and own.stop_requested
    assert isinstance(own.controls.drain()[-1], Stop)
    assert runs.on_quit() is OnQuit.AGAIN, "asked twice: leave without waiting"

    runs = Lifecycle()
    other = started(background())
    runs.opened(other)
    assert runs.leave("quit") is OnLeave.EXIT_NOW
    assert other.released and not other.stop_requested
    runs = Lifecycle()
    other = started(background())
    runs.opened(other)
    assert runs.leave("quit", stop=True) is OnLeave.WAIT_FOR_SAVE and other.stop_requested


def test_leaving_a_run_still_loading_exits_at_once():
    runs = Lifecycle()
    loading = in_app()  # no RunStarted yet: nothing to save, and a download may take minutes
    runs.opened(loading)
    assert runs.leave("SIGHUP") is OnLeave.EXIT_NOW and loading.stop_requested


def test_a_process_started_is_shown_or_stopped_or_left_as_the_app_stands():
    runs = Lifecycle()
    starting = runs.start_process("digits-cnn", paused=True, ends_with_app=True, from_setup=True)
    assert runs.phase is Phase.STARTING and starting.paused and runs.busy().startswith("Still starting digits-cnn")
    assert runs.on_quit() is OnQuit.CONFIRM_WHILE_STARTING
    assert runs.process_started(info()) is OnStarted.SHOW and runs.starting is None

    runs = Lifecycle()
    runs.start_process("", paused=False, ends_with_app=True, from_setup=False)
    assert runs.quit_once_started()
    assert runs.process_started(info("own")) is OnStarted.STOP_IT_AND_EXIT
    assert runs.stopped_unshown[0].run_id == "own"

    runs = Lifecycle()
    assert runs.start_process("", paused=False, ends_with_app=False, from_setup=False).what == "a background run"
    runs.leave("quit")
    assert runs.process_started(info("bg")) is OnStarted.LEAVE_IT
    assert [line.split(":")[0] for line in runs.closing_lines()] == ["bg"]
    assert "goes on in the background" in runs.closing_lines()[0]


def test_a_start_that_failed_goes_back_where_it_was():
    runs = Lifecycle()
    run = in_app()
    runs.opened(run)
    run.finished.set()
    runs.worker_ended(run)
    runs.start_process("x", paused=False, ends_with_app=True, from_setup=True)
    runs.process_failed()
    assert runs.phase is Phase.ENDED and runs.starting is None and runs.busy() is None


def test_the_closing_lines_say_where_each_run_ended_or_that_it_goes_on():
    runs = Lifecycle()
    stopped = started(in_app(run_dir="/runs/a"))
    runs.opened(stopped)
    stopped.result = stopped.engine.finished("stopped", "/runs/a/last.pt")
    released = started(background(run_dir="/runs/b"))
    runs.opened(released)
    released.release()
    told = started(background(run_dir="/runs/c"))
    runs.opened(told)
    told.stop("quit")
    told.release()
    lines = runs.closing_lines()
    assert lines[0].startswith("a: stopped ") and lines[0].endswith("/runs/a/last.pt")
    assert any(line.startswith("b: goes on in the background; attach with `tui-trainer attach b") for line in lines)
    assert not any(line.startswith("c: goes on") for line in lines), "a run told to stop does not go on"


def test_let_go_of_all_stops_own_runs_and_releases_the_others():
    runs = Lifecycle()
    own, other, done = started(in_app()), started(background()), started(in_app())
    for run in (own, other, done):
        runs.opened(run)
    done.finished.set()
    runs.let_go_of_all("SIGTERM")
    assert own.stop_requested and other.released and not other.stop_requested and not done.stop_requested


def test_a_scripted_worker_ends_when_released():
    run = background()
    thread = threading.Thread(target=run.work, name="trainer scripted test")
    thread.start()
    run.release()
    thread.join(10)
    assert not thread.is_alive() and run.began.is_set() and run.finished.is_set() and run.result is None
