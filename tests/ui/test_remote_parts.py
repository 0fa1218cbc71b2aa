"""The pieces behind detached runs in the app, without a detached run: commands queued until the socket
connects, the lost and detached states of the view, a gauge per torchrun rank, the Processes field's
check, the attach hint, `d` on a run that trains inside the app, and when the app's own engine may start."""

from __future__ import annotations

import time
from pathlib import Path

from tests.ui.conftest import driving, footer_actions, make_app, notified, scripted_app, start_scripted, wait_for
from tui_trainer.engine.controls import Pause, SetHyperparameters, Stop
from tui_trainer.engine.devices import DeviceMonitor, DeviceSample
from tui_trainer.ui import app as app_module
from tui_trainer.ui import form
from tui_trainer.ui.run_view import RunView
from tui_trainer.ui.socket_handle import EngineCuda, EngineProcess, SocketControls, attach_command
from tui_trainer.ui.widgets.gauges import DevicePanel


class FakeClient:
    def __init__(self) -> None:
        self.sent: list = []

    def send(self, command) -> bool:
        self.sent.append(command)
        return True


def test_commands_wait_for_the_socket_then_go_in_order_and_stop_after_it_closes():
    controls = SocketControls()
    controls.pause()
    controls.set_hyperparameters(lr=0.5)
    client = FakeClient()
    controls.connect(client)
    assert client.sent == [Pause(), SetHyperparameters(lr=0.5)]
    controls.stop(save=True, reason="test")
    assert client.sent[-1] == Stop(save=True, reason="test")
    assert not controls.has_pending(), "nothing is left for a local loop"
    controls.disconnect()
    controls.resume()
    assert len(client.sent) == 3 and not controls.has_pending()


def test_the_view_shows_a_lost_run_with_its_exit_status_and_checkpoint():
    view = RunView(step=120, state="running")
    lines = view.connection_ended("lost", "", "killed by SIGKILL", "/runs/a/epoch-0003.pt")
    assert view.state == "lost" and not view.active
    assert lines[0].level == "error"
    assert lines[0].text == ("Run lost at step 120: the engine process killed by SIGKILL; last checkpoint: "
                             "/runs/a/epoch-0003.pt")
    still = RunView(step=5, state="running").connection_ended("running")
    assert "still running" in still[0].text
    view = RunView(step=7, state="paused")
    assert "goes on in the background" in view.released()[0].text and view.state == "detached"


def test_a_torchrun_run_shows_a_gauge_per_rank():
    gib = 2**30
    samples = [DeviceSample(f"cuda:{rank}", "H100", memory_reserved_bytes=(rank + 1) * gib,
                            memory_total_bytes=80 * gib, utilization_percent=50.0) for rank in range(2)]
    panel = DevicePanel()
    lines = [line.plain for line in panel._ranks(samples, 30, 10)]
    assert lines[0] == "2 ranks · GiB reserved/total"
    assert lines[1] == "rank 0 cuda:0 H100" and lines[3] == "rank 1 cuda:1 H100"
    assert lines[2].endswith(" 1.0/80.0 50%") and lines[4].endswith(" 2.0/80.0 50%")
    tight = [line.plain for line in panel._ranks(samples * 4, 30, 5)]
    assert len(tight) == 9 and tight[1].startswith("0 cuda:0 ") and tight[8].startswith("7 cuda:1 ")
    assert all(len(line) <= 30 for line in tight)


class NoNvml:
    def available(self) -> bool:
        return False


def test_the_engine_sources_never_import_torch_or_fail():
    cuda = EngineCuda("H100")
    assert cuda.name(3) == "H100" and cuda.memory(0)["total"] is None
    assert EngineProcess(None).figures() == {}
    assert EngineProcess(2**22 + 12345).figures() == {}, "a process that is gone reads n/a"
    figures = [{"device": f"cuda:{rank}", "allocated_bytes": 1, "reserved_bytes": 2, "peak_bytes": 3,
                "total_bytes": 4} for rank in range(2)]
    monitor = DeviceMonitor("cuda:0", cuda=cuda, nvml=NoNvml(), process=EngineProcess(None))
    samples = monitor.sample(figures)
    assert [(sample.device, sample.name, sample.memory_reserved_bytes) for sample in samples] == \
        [("cuda:0", "H100", 2), ("cuda:1", "H100", 2)]


def test_the_processes_field_takes_whole_numbers_from_1_to_1024():
    assert form.check_processes(" 2 ") == (2, "")
    assert form.check_processes("0")[1] == "processes: given 0; allowed: a whole number from 1 to 1024"
    assert form.check_processes("two")[1].startswith("processes: not a whole number; given 'two'")


def test_the_attach_hint_names_the_folder_unless_it_is_the_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert attach_command(Path("checkpoints") / "run-1") == "tui-trainer attach run-1"
    assert attach_command(tmp_path / "my runs" / "run-1") == \
        f"tui-trainer attach run-1 --checkpoint-dir '{tmp_path / 'my runs'}'"


async def test_a_run_inside_the_app_offers_no_detach_and_the_palette_says_why(folder):
    app, handles = scripted_app(folder)
    async with driving(app) as pilot:
        run = await start_scripted(app, handles, pilot)
        assert run.active and not run.can_go_on_alone
        footer_keys = {action for action, lit in footer_actions(app).items() if lit}
        assert "detach" not in footer_keys and "pause" in footer_keys
        await pilot.press("d")
        assert run.active and not run.released and not run.engine.commands, "d does nothing to it"
        commands = {command.title: command for command in app.get_system_commands(app.dashboard)}
        assert {"Detach", "Runs"} <= set(commands)
        commands["Detach"].callback()
        await wait_for(pilot, lambda: notified(app, "cannot be detached"), "the explanation")


class WaitingRun:
    def __init__(self) -> None:
        self.ready_at: float | None = None

    def shown(self) -> None:
        self.ready_at = time.monotonic()


async def test_the_apps_engine_starts_once_the_ui_is_quiet_and_never_waits_longer_than_the_cap(folder,
                                                                                             monkeypatch):
    app = make_app(folder)
    async with driving(app) as pilot:
        quiet = WaitingRun()
        app._ready_when_quiet(quiet)
        await wait_for(pilot, lambda: quiet.ready_at is not None, "ready on a quiet UI", timeout=2)

        # A UI thread that never goes quiet (each look at its clock finds 10 ms more CPU spent) still lets the
        # engine start, after READY_WAIT_MAX_S.
        cpu = iter(range(1_000_000))
        monkeypatch.setattr(app_module.time, "thread_time", lambda: next(cpu) * 0.01)
        busy = WaitingRun()
        asked = time.monotonic()
        app._ready_when_quiet(busy)
        await pilot.pause(app_module.READY_WAIT_MAX_S / 2)
        assert busy.ready_at is None, "not while the UI is busy"
        await wait_for(pilot, lambda: busy.ready_at is not None, "ready at the cap", timeout=3)
        assert busy.ready_at - asked >= app_module.READY_WAIT_MAX_S
