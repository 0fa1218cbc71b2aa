"""The device panel: a memory gauge per GPU in use (torch.cuda and NVML figures), or the process's
memory and CPU use without one, and the run's torch threads (from its screen's run view). A torchrun run
sends one entry per rank, in rank order: one gauge each, labelled with the rank and its device. Any figure a
machine cannot give reads "n/a"."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from tui_trainer.engine.devices import DeviceSample
from tui_trainer.runs.cpu_share import ThreadChoice
from tui_trainer.text import printable
from tui_trainer.ui import format as fmt
from tui_trainer.ui.widgets.styling import component_style


def _gib(value: int | None) -> str:
    return fmt.NOT_AVAILABLE if value is None else f"{value / 2**30:.1f}"


class DevicePanel(Widget):
    """Redrawn when the app hands it new samples (about every two seconds while training)."""

    COMPONENT_CLASSES = {"gauge--bar", "gauge--label"}

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.samples: list[DeviceSample] = []
        self.border_title = "Device"

    def show(self, samples: list[DeviceSample]) -> None:
        self.samples = samples
        self.refresh()

    def render(self) -> Text:
        if not self.samples:
            return Text("waiting for the run to start", component_style(self, "gauge--label"))
        width = max(10, self.size.width)
        lines: list[Text] = []
        gpus = [sample for sample in self.samples if sample.device.startswith("cuda")]
        if len(gpus) > 1:
            lines = self._ranks(gpus, width, max(1, self.size.height))
        else:
            for sample in self.samples:
                lines += self._gpu(sample, width) if sample.device.startswith("cuda") else self._host(sample, width)
        for line in lines:
            line.truncate(width, overflow="ellipsis")
        return Text("\n").join(lines)

    def _label(self, text: str) -> tuple[str, object]:
        return (text, component_style(self, "gauge--label"))

    def _bar(self, fraction: float | None, width: int) -> tuple[str, object]:
        return (fmt.bar(fraction, width), component_style(self, "gauge--bar"))

    def _host(self, sample: DeviceSample, width: int) -> list[Text]:
        cores = _cores()
        cpu = sample.process_cpu_percent
        cpu_fraction = cpu / (100 * cores) if cpu is not None else None
        cpu_text = fmt.NOT_AVAILABLE if cpu is None else f"{cpu:.0f}%"
        lines = [
            Text.assemble(sample.name, self._label(", no GPU")),
            Text.assemble(self._label("process memory "), fmt.size(sample.process_rss_bytes)),
            Text.assemble(self._label("process CPU "), cpu_text, self._label(f" of {cores * 100}%")),
            Text.assemble(self._bar(cpu_fraction, width)),
        ]
        threads = self._threads()
        if threads is not None:
            lines.append(self._threads_line(threads, width))
        return lines

    def _threads(self) -> ThreadChoice | None:
        """The run's thread counts, from the run view of the screen this panel is on (the dashboard's)."""
        try:
            view = getattr(self.screen, "view", None)
        except Exception:  # not on a screen (yet)
            return None
        return ThreadChoice.from_dict(getattr(view, "threads", None))

    def _threads_line(self, threads: ThreadChoice, width: int) -> Text:
        """The longest of "torch threads 1 of 2 CPUs (1 busy)", "threads 1 of 2 CPUs (1 busy)", "threads 1/2 CPUs
        (1 busy)" and "threads 1/2 (1 busy)" that fits the panel (the last, cut short, where none does)."""
        count, cpus = str(threads.intra_op), f"{threads.cpus} CPU{'' if threads.cpus == 1 else 's'}"
        long_notes = ", ".join(printable(note) for note in threads.notes())
        short_notes = long_notes.replace("set by ", "")
        forms = [("torch threads ", f" of {cpus}", long_notes), ("threads ", f" of {cpus}", long_notes),
                 ("threads ", f"/{cpus}", short_notes), ("threads ", f"/{threads.cpus}", short_notes)]
        for label, rest, notes in forms:
            notes = f" ({notes})" if notes else ""
            if len(label + count + rest + notes) <= width:
                break
        return Text.assemble(self._label(label), count, self._label(rest), self._label(notes))

    def _gpu(self, sample: DeviceSample, width: int) -> list[Text]:
        total = sample.memory_total_bytes
        reserved = sample.memory_reserved_bytes
        fraction = reserved / total if reserved is not None and total else None
        temperature = fmt.NOT_AVAILABLE if sample.temperature_c is None else f"{sample.temperature_c:.0f}°C"
        utilization = fmt.NOT_AVAILABLE if sample.utilization_percent is None else f"{sample.utilization_percent:.0f}%"
        return [
            Text(f"{sample.device} {sample.name}"),
            Text.assemble(self._bar(fraction, width)),
            Text.assemble(self._label("reserved "), _gib(reserved), " / ", _gib(total), " GiB"),
            Text.assemble(self._label("alloc "), _gib(sample.memory_allocated_bytes),
                          self._label("  peak "), _gib(sample.memory_peak_bytes), " GiB"),
            Text.assemble(self._label("all procs "), _gib(sample.memory_used_all_processes_bytes), " GiB"),
            Text.assemble(self._label("util "), utilization, self._label("  temp "), temperature),
        ]


    def _ranks(self, samples: list[DeviceSample], width: int, height: int) -> list[Text]:
        """One gauge per rank: two lines each where they fit (name, then bar and figures), else one."""
        lines = [Text.assemble(self._label(f"{len(samples)} ranks · GiB reserved/total"))]
        roomy = 1 + 2 * len(samples) <= height
        for rank, sample in enumerate(samples):
            total, reserved = sample.memory_total_bytes, sample.memory_reserved_bytes
            fraction = reserved / total if reserved is not None and total else None
            figures = f" {_gib(reserved)}/{_gib(total)}"
            if roomy:
                utilization = ("" if sample.utilization_percent is None
                               else f" {sample.utilization_percent:.0f}%")
                lines.append(Text.assemble(self._label(f"rank {rank} "), f"{sample.device} {sample.name}"))
                lines.append(Text.assemble(self._bar(fraction, width - len(figures) - len(utilization)), figures,
                                           self._label(utilization)))
            else:
                label = f"{rank} {sample.device} "
                lines.append(Text.assemble(self._label(label), self._bar(fraction, width - len(label) - len(figures)),
                                           figures))
        return lines


def _cores() -> int:
    import os

    return os.cpu_count() or 1
