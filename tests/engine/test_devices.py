"""Devices: picking one (auto -> cuda, else mps, else cpu), listing them, and live figures where a missing
figure is None, never an error. Fake sources stand in for torch.cuda, NVML and psutil."""

from __future__ import annotations

import json

import pytest
import torch

from tui_trainer.engine.devices import (
    DeviceError,
    DeviceMonitor,
    DeviceSample,
    Nvml,
    PsutilProcess,
    cuda_memory_figures,
    device_name,
    list_devices,
    resolve_device,
)

GIB = 2**30


class FakeCuda:
    def __init__(self, count: int = 0, total: int | None = 8 * GIB) -> None:
        self.count, self.total = count, total

    def is_available(self) -> bool:
        return self.count > 0

    def device_count(self) -> int:
        return self.count

    def name(self, index: int) -> str:
        return f"Fake GPU {index}"

    def memory(self, index: int) -> dict:
        return {"allocated": (index + 1) * GIB, "reserved": 2 * GIB, "peak": 3 * GIB, "total": self.total}


class FakeNvml:
    def __init__(self, available: bool = True, figures: dict | None = None) -> None:
        self._available = available
        self._figures = figures if figures is not None else {
            "used_bytes": 5 * GIB, "total_bytes": 16 * GIB, "utilization_percent": 87, "temperature_c": 61}

    def available(self) -> bool:
        return self._available

    def figures(self, index: int) -> dict:
        return dict(self._figures) if self._available else {}


class FakeProcess:
    def __init__(self, figures: dict | None = None) -> None:
        self._figures = {"rss_bytes": 300 * 2**20, "cpu_percent": 97.5} if figures is None else figures

    def figures(self) -> dict:
        return dict(self._figures)


@pytest.mark.parametrize(("count", "mps", "expected"), [(2, True, "cuda:0"), (1, False, "cuda:0"),
                                                        (0, True, "mps"), (0, False, "cpu")])
def test_auto_prefers_cuda_then_mps_then_cpu(count, mps, expected):
    assert resolve_device("auto", FakeCuda(count), mps_available=mps) == expected


@pytest.mark.parametrize(("spec", "expected"), [("cuda", "cuda:0"), ("cuda:0", "cuda:0"), ("cuda:1", "cuda:1"),
                                                ("cpu", "cpu")])
def test_explicit_devices_that_exist(spec, expected):
    assert resolve_device(spec, FakeCuda(2), mps_available=False) == expected


def test_a_gpu_index_out_of_range_is_a_clear_error():
    with pytest.raises(DeviceError) as caught:
        resolve_device("cuda:2", FakeCuda(2), mps_available=False)
    assert str(caught.value) == "device: 'cuda:2' given, but this machine has 2 GPU(s): cuda:0..cuda:1"


@pytest.mark.parametrize(("spec", "mps", "message"), [
    ("cuda", False, "device: 'cuda' given, but this machine has no CUDA GPU; allowed: auto, cpu"),
    ("cuda:0", True, "device: 'cuda:0' given, but this machine has no CUDA GPU; allowed: auto, cpu, mps"),
    ("mps", False, "device: 'mps' given, but MPS is not available here; allowed: auto, cpu"),
])
def test_devices_this_machine_lacks(spec, mps, message):
    with pytest.raises(DeviceError) as caught:
        resolve_device(spec, FakeCuda(0), mps_available=mps)
    assert str(caught.value) == message


def test_list_devices():
    devices = list_devices(FakeCuda(2), mps_available=True)
    assert [device.id for device in devices] == ["auto", "cuda:0", "cuda:1", "mps", "cpu"]
    assert devices[1].name == "Fake GPU 0" and devices[1].memory_total_bytes == 8 * GIB
    assert devices[-1].name.startswith("CPU (") and devices[-1].memory_total_bytes is None
    assert [device.id for device in list_devices(FakeCuda(0), mps_available=False)] == ["auto", "cpu"]
    assert list_devices(FakeCuda(1, total=None), mps_available=False)[1].memory_total_bytes is None


def test_device_names():
    assert device_name("cuda:1", FakeCuda(2)) == "Fake GPU 1"
    assert device_name("cpu").startswith("CPU (") and device_name("mps") == "Apple MPS"


def test_cuda_memory_figures_only_for_cuda():
    assert cuda_memory_figures("cpu") == [] and cuda_memory_figures("mps") == []
    assert cuda_memory_figures("cuda:1", FakeCuda(2)) == [
        {"device": "cuda:1", "allocated_bytes": 2 * GIB, "reserved_bytes": 2 * GIB, "peak_bytes": 3 * GIB,
         "total_bytes": 8 * GIB}]


def test_monitor_on_the_cpu():
    monitor = DeviceMonitor("cpu", cuda=FakeCuda(0), nvml=FakeNvml(False), process=FakeProcess())
    (sample,) = monitor.sample()
    assert sample.device == "cpu" and sample.name.startswith("CPU")
    assert sample.process_rss_bytes == 300 * 2**20 and sample.process_cpu_percent == 97.5
    assert sample.memory_allocated_bytes is None and sample.utilization_percent is None
    assert sample.memory_total_bytes is None and sample.temperature_c is None


def test_monitor_on_a_gpu_with_nvml():
    monitor = DeviceMonitor("cuda:0", cuda=FakeCuda(1), nvml=FakeNvml(True), process=FakeProcess())
    (sample,) = monitor.sample()
    assert sample.device == "cuda:0" and sample.name == "Fake GPU 0"
    assert sample.memory_allocated_bytes == GIB and sample.memory_reserved_bytes == 2 * GIB
    assert sample.memory_peak_bytes == 3 * GIB and sample.memory_total_bytes == 8 * GIB
    assert sample.memory_used_all_processes_bytes == 5 * GIB
    assert sample.utilization_percent == 87 and sample.temperature_c == 61
    assert json.loads(json.dumps(sample.to_dict()))["utilization_percent"] == 87


def test_monitor_on_a_gpu_without_nvml_gives_none():
    monitor = DeviceMonitor("cuda:0", cuda=FakeCuda(1, total=None), nvml=FakeNvml(False), process=FakeProcess({}))
    (sample,) = monitor.sample()
    assert sample.memory_allocated_bytes == GIB
    assert sample.memory_total_bytes is None and sample.memory_used_all_processes_bytes is None
    assert sample.utilization_percent is None and sample.temperature_c is None
    assert sample.process_rss_bytes is None and sample.process_cpu_percent is None


def test_monitor_uses_figures_sent_by_the_engine():
    monitor = DeviceMonitor("cuda:1", cuda=FakeCuda(2), nvml=FakeNvml(True, {"total_bytes": 24 * GIB}),
                            process=FakeProcess())
    sent = [{"device": "cuda:1", "name": "Remote GPU", "allocated_bytes": 7, "reserved_bytes": 8, "peak_bytes": 9,
             "total_bytes": None}]
    (sample,) = monitor.sample(sent)
    assert sample.name == "Remote GPU" and sample.memory_allocated_bytes == 7
    assert sample.memory_total_bytes == 24 * GIB, "the driver's total fills in for a missing one"
    assert sample.utilization_percent is None and sample.memory_used_all_processes_bytes is None


def test_partial_nvml_figures_are_none_not_errors():
    monitor = DeviceMonitor("cuda:0", cuda=FakeCuda(1), nvml=FakeNvml(True, {"utilization_percent": 50}),
                            process=FakeProcess())
    (sample,) = monitor.sample()
    assert sample.utilization_percent == 50 and sample.temperature_c is None
    assert sample.memory_used_all_processes_bytes is None


def test_sample_is_plain_data():
    sample = DeviceSample("cpu", "CPU")
    assert sample.to_dict()["memory_total_bytes"] is None and sample.extra == {}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a GPU")
def test_this_machine_without_a_gpu():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "mps")
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        resolve_device("cuda")
    nvml = Nvml()
    assert nvml.figures(0) == {}
    assert list_devices()[-1].id == "cpu"
    (sample,) = DeviceMonitor("cpu").sample()
    assert sample.process_rss_bytes and sample.process_rss_bytes > 0
    assert sample.utilization_percent is None


def test_process_figures_from_psutil():
    figures = PsutilProcess().figures()
    assert figures["rss_bytes"] > 0 and figures["cpu_percent"] >= 0


# ---------------------------------------------------------------- on a real GPU


@pytest.mark.gpu
def test_real_gpu_is_found_and_measured():
    assert resolve_device("auto") == "cuda:0"
    devices = list_devices()
    assert devices[1].id == "cuda:0" and devices[1].memory_total_bytes > 0
    (figures,) = cuda_memory_figures("cuda:0")
    assert figures["total_bytes"] > 0 and figures["allocated_bytes"] >= 0
    (sample,) = DeviceMonitor("cuda:0").sample()
    assert sample.memory_total_bytes > 0


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_training_on_a_gpu(precision, make_config, run_trainer):
    from tui_trainer.engine.events import Progress

    config = make_config("digits-mlp", device="cuda", precision=precision, epochs=3)
    finished, events, trainer = run_trainer(config)
    assert finished.state == "finished" and finished.last["val_accuracy"] > 0.85
    assert trainer.device.type == "cuda"
    assert (trainer.scaler is not None) == (precision == "fp16")
    devices = events.of(Progress)[-1].devices
    assert devices and devices[0]["device"] == "cuda:0" and devices[0]["allocated_bytes"] > 0


def test_an_ended_process_reads_as_no_figures_not_zero_bytes():
    import subprocess
    import sys

    from tui_trainer.engine.devices import PsutilProcess

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    watched = PsutilProcess(child.pid)
    import psutil

    deadline = __import__("time").monotonic() + 30
    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:  # ended, not yet reaped
        assert __import__("time").monotonic() < deadline
    assert watched.figures() == {}
    child.wait()
    assert watched.figures() == {}
