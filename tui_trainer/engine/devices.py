"""Devices: which one to train on, what this machine has, and live figures for the gauges.

Figures a machine cannot give come back as None ("not available" is a value). The sources sit behind
small interfaces (CudaSource, NvmlSource, ProcessSource) so tests can hand in fakes.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


class DeviceError(Exception):
    """The configured device is not on this machine."""


@dataclass(frozen=True)
class DeviceInfo:
    """One device this machine offers, for the setup screen's list."""

    id: str
    name: str
    memory_total_bytes: int | None = None


@dataclass(frozen=True)
class DeviceSample:
    """Figures for one device at one moment. Any of them may be None (not available here)."""

    device: str
    name: str
    memory_allocated_bytes: int | None = None
    memory_reserved_bytes: int | None = None
    memory_peak_bytes: int | None = None
    memory_total_bytes: int | None = None
    memory_used_all_processes_bytes: int | None = None
    utilization_percent: float | None = None
    temperature_c: float | None = None
    process_rss_bytes: int | None = None
    process_cpu_percent: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- sources


class CudaSource(Protocol):
    def is_available(self) -> bool: ...
    def device_count(self) -> int: ...
    def name(self, index: int) -> str: ...
    def memory(self, index: int) -> dict[str, int | None]:
        """allocated, reserved, peak and total bytes as torch.cuda sees them in this process."""
        ...


class NvmlSource(Protocol):
    def available(self) -> bool: ...
    def figures(self, index: int) -> dict[str, float | int | None]:
        """used_bytes (all processes), total_bytes, utilization_percent, temperature_c."""
        ...


class ProcessSource(Protocol):
    def figures(self) -> dict[str, float | int | None]:
        """rss_bytes and cpu_percent of this process."""
        ...


class TorchCuda:
    def is_available(self) -> bool:
        import torch

        return torch.cuda.is_available()

    def device_count(self) -> int:
        import torch

        return torch.cuda.device_count()

    def name(self, index: int) -> str:
        import torch

        return torch.cuda.get_device_name(index)

    def memory(self, index: int) -> dict[str, int | None]:
        import torch

        total: int | None
        try:
            total = torch.cuda.get_device_properties(index).total_memory
        except (RuntimeError, AssertionError):
            total = None
        return {
            "allocated": torch.cuda.memory_allocated(index),
            "reserved": torch.cuda.memory_reserved(index),
            "peak": torch.cuda.max_memory_allocated(index),
            "total": total,
        }


class Nvml:
    """NVML through nvidia-ml-py; on a machine without the driver every figure is None."""

    def __init__(self) -> None:
        self._ready: bool | None = None

    def available(self) -> bool:
        if self._ready is None:
            try:
                import pynvml

                pynvml.nvmlInit()
                self._ready = True
            except Exception:  # NVMLError_LibraryNotFound, DriverNotLoaded, ImportError ...
                self._ready = False
        return self._ready

    def figures(self, index: int) -> dict[str, float | int | None]:
        if not self.available():
            return {}
        import pynvml

        result: dict[str, float | int | None] = {}
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        except pynvml.NVMLError:
            return result
        for key, read in (
            ("memory", lambda: pynvml.nvmlDeviceGetMemoryInfo(handle)),
            ("utilization_percent", lambda: pynvml.nvmlDeviceGetUtilizationRates(handle).gpu),
            ("temperature_c", lambda: pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)),
        ):
            try:
                value = read()
            except pynvml.NVMLError:
                continue
            if key == "memory":
                result["used_bytes"], result["total_bytes"] = value.used, value.total
            else:
                result[key] = value
        return result


class PsutilProcess:
    def __init__(self, pid: int | None = None) -> None:
        import psutil

        self._process = psutil.Process(pid)
        self._process.cpu_percent(None)  # the first call only starts the measurement

    def figures(self) -> dict[str, float | int | None]:
        import psutil

        try:
            with self._process.oneshot():
                if self._process.status() == psutil.STATUS_ZOMBIE:
                    return {}  # it has ended (a zombie reads as 0 B): n/a, not a figure
                return {"rss_bytes": self._process.memory_info().rss, "cpu_percent": self._process.cpu_percent(None)}
        except psutil.Error:
            return {}


# ---------------------------------------------------------------- choosing a device


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve_device(spec: str, cuda: CudaSource | None = None, mps_available: bool | None = None) -> str:
    """"auto" -> cuda, else mps, else cpu. An explicit device that is not here raises DeviceError."""
    cuda = cuda or TorchCuda()
    has_mps = _mps_available() if mps_available is None else mps_available
    if spec == "auto":
        if cuda.is_available():
            return "cuda:0"
        return "mps" if has_mps else "cpu"
    if spec.startswith("cuda"):
        if not cuda.is_available():
            raise DeviceError(f"device: {spec!r} given, but this machine has no CUDA GPU; allowed: auto, cpu"
                              + (", mps" if has_mps else ""))
        index = int(spec.partition(":")[2] or 0)
        if index >= cuda.device_count():
            raise DeviceError(f"device: {spec!r} given, but this machine has {cuda.device_count()} GPU(s): "
                              f"cuda:0..cuda:{cuda.device_count() - 1}")
        return f"cuda:{index}"
    if spec == "mps" and not has_mps:
        raise DeviceError("device: 'mps' given, but MPS is not available here; allowed: auto, cpu")
    return spec


def list_devices(cuda: CudaSource | None = None, mps_available: bool | None = None) -> list[DeviceInfo]:
    """What the setup screen offers: each GPU by name and memory, MPS, the CPU."""
    cuda = cuda or TorchCuda()
    devices = [DeviceInfo("auto", "best available")]
    if cuda.is_available():
        for index in range(cuda.device_count()):
            devices.append(DeviceInfo(f"cuda:{index}", cuda.name(index), cuda.memory(index).get("total")))
    if _mps_available() if mps_available is None else mps_available:
        devices.append(DeviceInfo("mps", "Apple MPS"))
    devices.append(DeviceInfo("cpu", f"CPU ({os.cpu_count()} cores)"))
    return devices


def device_name(device: str, cuda: CudaSource | None = None) -> str:
    if device.startswith("cuda"):
        return (cuda or TorchCuda()).name(int(device.partition(":")[2] or 0))
    return "Apple MPS" if device == "mps" else f"CPU ({os.cpu_count()} cores)"


def cuda_memory_figures(device: str, cuda: CudaSource | None = None) -> list[dict[str, Any]]:
    """The training process's torch.cuda figures for its device, sent along with progress events.
    Host-side counters only: no synchronisation."""
    if not device.startswith("cuda"):
        return []
    index = int(device.partition(":")[2] or 0)
    memory = (cuda or TorchCuda()).memory(index)
    return [{"device": device, "allocated_bytes": memory["allocated"], "reserved_bytes": memory["reserved"],
             "peak_bytes": memory["peak"], "total_bytes": memory["total"]}]


class DeviceMonitor:
    """Samples the devices a run uses, for the gauges. Cheap enough for a timer at 1 Hz."""

    def __init__(self, device: str, cuda: CudaSource | None = None, nvml: NvmlSource | None = None,
                 process: ProcessSource | None = None) -> None:
        self.device = device
        self._cuda = cuda
        self._nvml = nvml if nvml is not None else Nvml()
        self._process = process if process is not None else PsutilProcess()

    def sample(self, engine_figures: list[dict[str, Any]] | None = None) -> list[DeviceSample]:
        """One sample per device. `engine_figures` are the torch.cuda numbers the engine sent (they are
        read in the training process, which may not be this one); NVML adds what the driver knows."""
        process = self._process.figures()
        rss, cpu = process.get("rss_bytes"), process.get("cpu_percent")
        if not self.device.startswith("cuda"):
            name = device_name(self.device)
            return [DeviceSample(self.device, name, process_rss_bytes=rss, process_cpu_percent=cpu)]
        samples = []
        for figures in engine_figures or cuda_memory_figures(self.device, self._cuda):
            index = int(figures["device"].partition(":")[2] or 0)
            nvml = self._nvml.figures(index) if self._nvml.available() else {}
            samples.append(DeviceSample(
                device=figures["device"],
                name=figures.get("name") or (self._cuda or TorchCuda()).name(index),
                memory_allocated_bytes=figures.get("allocated_bytes"),
                memory_reserved_bytes=figures.get("reserved_bytes"),
                memory_peak_bytes=figures.get("peak_bytes"),
                memory_total_bytes=figures.get("total_bytes") or nvml.get("total_bytes"),
                memory_used_all_processes_bytes=nvml.get("used_bytes"),
                utilization_percent=nvml.get("utilization_percent"),
                temperature_c=nvml.get("temperature_c"),
                process_rss_bytes=rss,
                process_cpu_percent=cpu,
            ))
        return samples
