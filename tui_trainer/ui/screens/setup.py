"""The setup screen: a preset list beside a form that edits the run's config, and where it trains (for
the app, ending with it, or detached in a background process, under torchrun with more than one process).

Nothing here imports torch at import time. After the first frame a thread worker imports it and lists
this machine's devices; another counts the training samples of the chosen data, so that a batch size
larger than the training set is flagged before the start.
"""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, OptionList, Select, Static, Switch
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState

from tui_trainer import presets
from tui_trainer.catalog.datasets import DATASETS
from tui_trainer.catalog.losses import LOSSES
from tui_trainer.catalog.models import MODELS
from tui_trainer.catalog.optimizers import OPTIMIZERS
from tui_trainer.config import ConfigError, RunConfig, apply_overrides, config_from_dict
from tui_trainer.engine.devices import DeviceInfo
from tui_trainer.errors import UserError
from tui_trainer.launch import LaunchOptions
from tui_trainer.runs.request import RunRequest
from tui_trainer.text import literal, printable
from tui_trainer.ui import form
from tui_trainer.ui import format as fmt
from tui_trainer.ui.heap import freeze_long_lived

LABELS = {
    "model": "Model",
    "loss": "Loss",
    "optimizer": "Optimizer",
    "lr": "Learning rate",
    "epochs": "Epochs",
    "batch_size": "Batch size",
    "device": "Device",
    "precision": "Precision",
    "checkpoint_dir": "Checkpoints",
}
SELECTS = ("model", "loss", "optimizer", "device", "precision")
DEVICES_BEFORE_PROBE = [("auto: best available", "auto"), ("cpu", "cpu")]
"""The device choices until the machine's own are known (listing them imports torch)."""
INITIAL_CHOICES: dict[str, list[tuple[str, str]]] = {
    "model": [(name, name) for name in MODELS],
    "loss": [(name, name) for name in LOSSES],
    "optimizer": [(name, name) for name in OPTIMIZERS],
    "device": DEVICES_BEFORE_PROBE,
    "precision": [(name, name) for name in form.PRECISIONS],
}
START_HINT = "Start (ctrl+r)"
LAUNCHING_HINT = "Starting the engine ..."
DETACH_HINTS = {False: "off: ends with this app",
                True: "on: outlives the app"}
"""The switch's state in words too, so that it reads without colour."""
TORCHRUN_HINT = "on: torchrun, {n} processes"


def device_label(device: DeviceInfo) -> str:
    memory = f", {fmt.size(device.memory_total_bytes)}" if device.memory_total_bytes else ""
    return f"{device.id}: {device.name}{memory}"


class SetupScreen(Screen[None]):
    """Pick a preset, edit the form, start (ctrl+r anywhere, or Enter on Start)."""

    BINDINGS = [
        Binding("ctrl+r", "start", "Start", priority=True, tooltip="Start training (from any field)"),
        Binding("l", "app.load", "Load checkpoint", tooltip="Load a checkpoint; it waits paused on the dashboard"),
        Binding("r", "app.runs", "Runs", tooltip="The runs of the checkpoint folder; attach to a live one"),
        Binding("question_mark", "app.help", "Keys", key_display="?", tooltip="Every key"),
        Binding("q", "app.quit", "Quit", show=False, tooltip="Quit (outside a text field)"),
    ]
    HELP_EXTRA = [
        ("tab, shift+tab", "Next, previous field"),
        ("up down, enter", "Move in the preset list; enter chooses a preset (fills the form)"),
        ("space on Detach", "Train in a background process that outlives the app (d on the dashboard "
                            "detaches; `tui-trainer attach` comes back)"),
        ("enter on Start", "Start training"),
    ]

    class RunConfigured(Message):
        """The form is valid and the user asked to start."""

        def __init__(self, config: RunConfig, request: RunRequest, *, in_background: bool, processes: int) -> None:
            super().__init__()
            self.config = config
            self.request = request
            """What to train, as an engine process builds it: the form's whole config as overrides on its preset."""
            self.in_background = in_background
            """The Detach switch (or more than one process): it trains on without the app."""
            self.processes = processes

    def __init__(self, options: LaunchOptions) -> None:
        super().__init__(id="setup")
        self.options = options
        self.entries: dict[str, presets.PresetEntry] = {}
        self.preset_name: str | None = None
        self.preset_source: str | None = None
        """The chosen preset as presets.load finds it (a shipped name or a file's path)."""
        self.processes = max(1, options.processes)
        self.base: dict[str, Any] | None = None
        """The chosen preset's raw dict with the command line's overrides."""
        self.base_config: RunConfig | None = None
        self.devices: list[DeviceInfo] | None = None
        self.train_sizes: dict[tuple, int] = {}
        self.sizing: set[tuple] = set()
        self.check_result = form.FormCheck()
        self.start_error: ConfigError | None = None
        """An error the trainer raised at the last start, shown until the form changes."""
        self.starting = False
        """A run is being started (Start waits for it)."""
        self._started_once = False

    def compose(self) -> ComposeResult:
        with Horizontal(id="setup-body"):
            with Vertical(id="preset-pane"):
                yield Label("Presets", classes="pane-title")
                yield OptionList(id="preset-list")
            with VerticalScroll(id="form") as scroll:
                scroll.can_focus = False  # tab goes from the preset list straight to the first field
                yield Label("Run", classes="pane-title")
                yield Static("", id="preset-summary")
                for name in form.FIELDS:
                    with Horizontal(classes="field", id=f"field-{name}"):
                        yield Label(LABELS[name], classes="field-label")
                        if name in SELECTS:
                            yield Select(INITIAL_CHOICES[name], id=name, allow_blank=False, compact=True)
                        else:
                            yield Input(id=name, compact=True)
                    yield Static("", id=f"error-{name}", classes="field-error")
                with Horizontal(classes="field", id="field-detach"):
                    yield Label("Detach", classes="field-label")
                    yield Switch(self.options.detach or self.processes > 1, id="detach", animate=False)
                    yield Static(DETACH_HINTS[self.options.detach or self.processes > 1], id="detach-hint",
                                 classes="field-hint")
                with Horizontal(classes="field", id="field-processes"):
                    yield Label("Processes", classes="field-label")
                    yield Input(str(self.processes), id="processes", compact=True)
                yield Static("", id="error-processes", classes="field-error")
                yield Static("", id="form-error", classes="field-error")
                yield Button(START_HINT, id="start", variant="primary")
        yield Footer()

    # ------------------------------------------------------------ loading

    def on_mount(self) -> None:
        self.entries = {entry.name: entry for entry in presets.discover(self.options.presets_dir)}
        wanted = self.options.preset or presets.DEFAULT_PRESET
        if wanted not in self.entries:
            try:
                path = presets.resolve(wanted, self.options.presets_dir)
                self.entries[wanted] = presets.PresetEntry(wanted, path, str(path), "")
            except ConfigError as error:
                self._general_error(str(error))
        option_list = self.query_one("#preset-list", OptionList)
        for entry in self.entries.values():
            prompt = literal(entry.name, style="bold")
            prompt.append(f"\n{printable(entry.error or entry.description)}")
            if option_list.option_count:
                option_list.add_option(None)
            option_list.add_option(Option(prompt, id=entry.name, disabled=entry.error is not None))
        if wanted in self.entries:
            option_list.highlighted = option_list.get_option_index(wanted)
            self.call_after_refresh(option_list.scroll_to_highlight, top=True)
            self.choose(wanted)
        option_list.focus()
        self._probe_devices()

    def focus_presets(self) -> None:
        """Focus the preset list, not a field: back from a run, the keys a toast suggests (r) act as keys
        instead of being typed into the field that had the focus before the run started."""
        if self.is_mounted:
            self.query_one("#preset-list", OptionList).focus()

    @work(thread=True, exclusive=True, group="setup-devices", exit_on_error=False)
    def _probe_devices(self) -> list[DeviceInfo]:
        # Importing torch here, after the first frame, also warms it up for the first run.
        from tui_trainer.engine.devices import list_devices

        return list_devices()

    @work(thread=True, group="setup-sizes", exit_on_error=False)
    def _count_samples(self, key: tuple) -> tuple[tuple, int]:
        return key, form.train_size(key)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state != WorkerState.SUCCESS:
            if event.state == WorkerState.ERROR and worker.group == "setup-sizes":
                self.sizing.clear()  # the trainer reports data problems when it starts
            return
        if worker.group == "setup-devices":
            freeze_long_lived()  # torch is imported now
            self.devices = worker.result
            self._set_device_options()
        elif worker.group == "setup-sizes":
            key, size = worker.result
            self.sizing.discard(key)
            self.train_sizes[key] = size
        self.validate()

    def _set_device_options(self) -> None:
        select = self.query_one("#device", Select)
        current = select.value if isinstance(select.value, str) else None
        options = [(device_label(device), device.id) for device in self.devices or []]
        if current and current not in {device.id for device in self.devices or []}:
            options.append((f"{current}: not on this machine", current))
        select.set_options(options)
        if current:
            select.value = current

    # ------------------------------------------------------------ presets

    @on(OptionList.OptionSelected, "#preset-list")
    def _preset_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self.choose(event.option.id)

    def choose(self, name: str) -> None:
        """Fill the form from a preset (with the command line's overrides on top)."""
        self.preset_name = name
        self.start_error = None
        self.preset_source = str(self.entries[name].path) if name in self.entries else name
        try:
            path, raw = presets.load(self.preset_source, self.options.presets_dir)
            raw.setdefault("name", name)
            base = apply_overrides(raw, self.options.overrides, source=str(path))
            config = config_from_dict(base, source=str(path))
        except ConfigError as error:
            self.base = self.base_config = None
            self._general_error(str(error))
            return
        self.base, self.base_config = base, config
        for field, values in form.choices(config).items():
            self.query_one(f"#{field}", Select).set_options([(value, value) for value in values])
        if self.devices is None and config.device not in ("auto", "cpu"):
            self.query_one("#device", Select).set_options([*DEVICES_BEFORE_PROBE, (config.device, config.device)])
        values = form.values_from(config)
        for field, value in values.items():
            widget = self.query_one(f"#{field}")
            if isinstance(widget, (Select, Input)):
                widget.value = value
        if self.devices is not None:
            self._set_device_options()
        self._summary(config)
        self.validate()

    def _summary(self, config: RunConfig) -> None:
        text = config.description or config.name
        if config.data.import_target:
            text += f"\n{config.task} · data from your code: {config.data.import_target}"
        else:
            dataset = DATASETS.get(config.data.source or "")
            what = dataset.description if dataset else "custom data"
            text += f"\n{config.task} · {config.data.source}: {what}"
        key = form.sizing_key(config)
        if key in self.train_sizes:
            text += f" · {self.train_sizes[key]:,} training samples"
        self.query_one("#preset-summary", Static).update(literal(text, keep_newlines=True))

    # ------------------------------------------------------------ validation

    def values(self) -> dict[str, str]:
        values = {}
        for name in form.FIELDS:
            widget = self.query_one(f"#{name}")
            if isinstance(widget, Select):
                if isinstance(widget.value, str):
                    values[name] = widget.value
            elif isinstance(widget, Input):
                values[name] = widget.value
        return values

    @on(Input.Changed)
    @on(Select.Changed)
    @on(Switch.Changed)
    def _edited(self, event: Message) -> None:
        self.start_error = None
        self.validate()

    def validate(self) -> form.FormCheck:
        """Check the form; flag each wrong field beside it. Returns the check (config when valid)."""
        if self.base is None:
            return form.FormCheck(errors={form.GENERAL: "choose a valid preset"})
        values = self.values()
        key = form.sizing_key(self.base_config) if self.base_config is not None else None
        size = self.train_sizes.get(key) if key else None
        result = form.check(self.base, values, size)
        device = values.get("device")
        if self.devices is not None and device and device not in {info.id for info in self.devices}:
            allowed = ", ".join(info.id for info in self.devices)
            result.errors.setdefault("device", f"device: {device!r} is not on this machine; allowed: {allowed}")
            result.config = None
        if self.start_error is not None:
            result.errors.setdefault(form.field_for(self.start_error.path), str(self.start_error))
            result.config = None
        processes, problem = form.check_processes(self.query_one("#processes", Input).value)
        self.processes = processes or 1
        if problem:
            result.errors["processes"] = problem
            result.config = None
        self._show_detach()
        self.check_result = result
        for name in (*form.FIELDS, "processes"):
            self._flag(name, result.errors.get(name, ""))
        self._general_error(result.errors.get(form.GENERAL, ""))
        if key is not None and key not in self.train_sizes and key not in self.sizing:
            self.sizing.add(key)
            self._count_samples(key)
        if key in self.train_sizes and result.config is not None:
            self._summary(result.config)
        return result

    def _flag(self, name: str, message: str) -> None:
        error = self.query_one(f"#error-{name}", Static)
        error.update(literal(message))
        error.display = bool(message)
        self.query_one(f"#{name}").set_class(bool(message), "-invalid")

    def _general_error(self, message: str) -> None:
        error = self.query_one("#form-error", Static)
        error.update(literal(message))
        error.display = bool(message)

    def show_start_error(self, error: UserError) -> None:
        """The run refused the config at the start (a batch size larger than the data, a device this machine
        lacks, data that cannot be had ...): flag the field it names and keep the form."""
        message = error.message if isinstance(error, ConfigError) else str(error)
        self.start_error = ConfigError("", error.field, message)
        self.validate()

    # ------------------------------------------------------------ start

    @on(Button.Pressed, "#start")
    def _start_pressed(self) -> None:
        self.action_start()

    def action_start(self) -> None:
        result = self.validate()
        if result.config is None:
            problems = len(result.errors) or 1
            self.notify(f"Not started: fix the {problems} marked field{'s' if problems > 1 else ''} first.",
                        severity="error", timeout=4)
            for name in (*form.FIELDS, "processes"):
                if name in result.errors:
                    self.query_one(f"#{name}").focus()
                    break
            return
        # The form's whole config goes as overrides on its preset, so an engine process runs exactly this.
        request = RunRequest(preset=self.preset_source, presets_dir=self.options.presets_dir,
                             overrides=result.config.to_dict())
        self.post_message(self.RunConfigured(result.config, request, in_background=self.detach_wanted(),
                                             processes=self.processes))

    # ------------------------------------------------------------ detached runs

    def detach_wanted(self) -> bool:
        """Start detached: the switch is on, or more than one process is asked for (torchrun)."""
        if not self.is_mounted:
            return self.options.detach or self.processes > 1
        return self.query_one("#detach", Switch).value or self.processes > 1

    def _show_detach(self) -> None:
        switch = self.query_one("#detach", Switch)
        many = self.processes > 1
        if many and not switch.value:
            switch.value = True
        switch.disabled = many
        hint = TORCHRUN_HINT.format(n=self.processes) if many else DETACH_HINTS[switch.value]
        self.query_one("#detach-hint", Static).update(hint)

    def show_launching(self, busy: bool) -> None:
        """A run is being started in processes of its own: the Start button says so and waits, and the
        footer dims Start."""
        self.starting = busy
        if self.is_mounted:
            button = self.query_one("#start", Button)
            button.label = LAUNCHING_HINT if busy else START_HINT
            button.disabled = busy
            self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return None if action == "start" and self.starting else True

    def start_when_ready(self) -> None:
        """--start: start as soon as the form holds a valid config (at once when it already does)."""
        if not self._started_once:
            self._started_once = True
            self.action_start()
