"""The metrics a script logs between two progress events: tensors add up where they are (on their device), and
are read back together, one transfer per device, only when a progress event is due."""

from __future__ import annotations

import math
import numbers
import time
from typing import Any

import torch

MAX_NAME_CHARS = 100


def check_name(name: str, call: str) -> None:
    if not name or len(name) > MAX_NAME_CHARS or not name.isidentifier():
        raise ValueError(f"{call}: {name[:MAX_NAME_CHARS]!r} is not a metric name; use a short name such as loss")


def checked_value(name: str, value: Any, call: str) -> torch.Tensor | float:
    """value as a one-element tensor (kept where it is, detached) or a float; one clear error for anything
    else. Only the tensor's metadata is looked at: nothing is read from its device."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            shape = "x".join(str(size) for size in value.shape) or "empty"
            raise ValueError(f"{call}({name}=...): a tensor of shape {shape}; log one-element tensors "
                             "(a mean or a sum)")
        if value.dtype == torch.bool or value.is_complex():
            raise TypeError(f"{call}({name}=...): a {value.dtype} tensor, not a real number")
        value = value.detach()
        return value if value.dim() == 0 else value.reshape(())
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise TypeError(f"{call}({name}=...): {shown} is a {type(value).__name__}, not a number; log numbers or "
                        "one-element tensors")
    return float(value)


class MetricWindow:
    """Sums and counts of each logged name since the last progress event."""

    def __init__(self, every_steps: int, every_s: float) -> None:
        self.every_steps, self.every_s = every_steps, every_s
        self._sums: dict[str, torch.Tensor | float] = {}
        self._counts: dict[str, int] = {}
        self.clear()

    def clear(self) -> None:
        self._sums.clear()
        self._counts.clear()
        self.steps = 0
        self.samples = 0
        self.started = time.perf_counter()

    def add(self, name: str, value: torch.Tensor | float) -> None:
        total = self._sums.get(name)
        if isinstance(value, torch.Tensor):
            if not (isinstance(total, torch.Tensor) and total.device == value.device):
                # A sum of its own on the value's device, in float32 (every device has it).
                earlier, total = total, torch.zeros((), dtype=torch.float32, device=value.device)
                if earlier is not None:
                    total.add_(earlier.to(value.device) if isinstance(earlier, torch.Tensor) else earlier)
                self._sums[name] = total
            total.add_(value)
        elif isinstance(total, torch.Tensor):
            total.add_(value)
        else:
            self._sums[name] = (total or 0.0) + value
        self._counts[name] = self._counts.get(name, 0) + 1

    def due(self) -> bool:
        return self.steps >= self.every_steps or time.perf_counter() - self.started >= self.every_s

    def read(self) -> dict[str, tuple[float, int]]:
        """Each name's (sum, count), reading the device sums back together (one transfer per device)."""
        values: dict[str, float] = {name: total for name, total in self._sums.items() if isinstance(total, float)}
        by_device: dict[torch.device, list[str]] = {}
        for name, total in self._sums.items():
            if isinstance(total, torch.Tensor):
                by_device.setdefault(total.device, []).append(name)
        for names in by_device.values():
            read = torch.stack([self._sums[name] for name in names]).tolist()  # type: ignore[misc]
            values.update(zip(names, read, strict=True))
        return {name: (values[name], self._counts[name]) for name in self._sums}


def means(sums: dict[str, tuple[float, int]]) -> dict[str, float]:
    return {name: total / count if count else math.nan for name, (total, count) in sums.items()}
