"""Live tweaks: the learning rate, weight decay and momentum of a running or paused run.

The values go to the engine as one command, applied at the next step boundary; the engine reports the
change (HyperparametersChanged), which the log and the loss chart show.
"""

from __future__ import annotations

import math

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from tui_trainer.catalog.optimizers import LIVE_TUNABLE, OPTIMIZERS
from tui_trainer.engine.controls import allowed_values, hyperparameter_problem
from tui_trainer.text import literal
from tui_trainer.ui import format as fmt
from tui_trainer.ui.run_view import TWEAK_DIGITS

LABELS = {"lr": "Learning rate", "weight_decay": "Weight decay", "momentum": "Momentum"}


def tunable(optimizer: str) -> list[str]:
    """What this optimizer lets a user change while it trains."""
    takes = OPTIMIZERS[optimizer].hyperparameters if optimizer in OPTIMIZERS else ("lr",)
    return [name for name in LIVE_TUNABLE if name in takes]


def check_value(name: str, text: str) -> tuple[float | None, str]:
    """The value typed for a hyperparameter, or why it cannot be used (the bounds a preset has for it)."""
    try:
        value = float(text.strip())
    except ValueError:
        return None, f"{name}: not a number; given {text.strip()[:40]!r}; allowed: {allowed_values(name)}"
    problem = hyperparameter_problem(name, value)
    return (None, problem) if problem else (value, "")


class TweakPanel(ModalScreen[dict[str, float] | None]):
    """Returns the changed values (only those that differ), or None when cancelled."""

    BINDINGS = [Binding("escape", "dismiss", "Cancel", show=False)]

    def __init__(self, optimizer: str, current: dict[str, float], step: int) -> None:
        super().__init__(classes="panel-screen")
        self.optimizer = optimizer
        self.current = current
        self.step = step
        self.names = tunable(optimizer)

    def compose(self) -> ComposeResult:
        with Vertical(classes="panel tweak-panel"):
            yield Label(literal(self._title()), id="tweak-title", classes="panel-title")
            for name in self.names:
                with Horizontal(classes="panel-field"):
                    yield Label(LABELS[name], classes="field-label")
                    value = self.current.get(name)
                    yield Input(fmt.number(value, TWEAK_DIGITS) if value is not None else "", id=f"tweak-{name}",
                                compact=True)
                yield Static("", id=f"tweak-{name}-error", classes="field-error")
            yield Static("Applied at the next step boundary; logged, written to metrics.jsonl and marked "
                         "on the loss chart.", classes="panel-hint")
            with Horizontal(classes="panel-buttons"):
                yield Button("Apply (Enter)", id="apply", variant="primary")
                yield Button("Cancel (Esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one(f"#tweak-{self.names[0]}", Input).focus()

    def _title(self) -> str:
        return f"Live tweaks: {self.optimizer}, now at step {self.step:,}"

    def show_step(self, step: int) -> None:
        """The run went on while the panel is open: name the step the status line names."""
        if step != self.step:
            self.step = step
            for title in self.query("#tweak-title").results(Label):  # none yet while composing, or once closing
                title.update(literal(self._title()))

    def on_input_changed(self, event: Input.Changed) -> None:
        self._check()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._apply()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "apply":
            self._apply()
        else:
            self.dismiss(None)

    def _check(self) -> dict[str, float] | None:
        values: dict[str, float] = {}
        ok = True
        for name in self.names:
            text = self.query_one(f"#tweak-{name}", Input).value
            if not text.strip() and self.current.get(name) is None:
                value, problem = None, ""  # the run never set it (the optimizer's default): left as it is
            else:
                value, problem = check_value(name, text)
            error = self.query_one(f"#tweak-{name}-error", Static)
            error.update(literal(problem))
            error.display = bool(problem)
            self.query_one(f"#tweak-{name}", Input).set_class(bool(problem), "-invalid")
            if problem:
                ok = False
            elif value is not None:
                values[name] = value
        return values if ok else None

    def _apply(self) -> None:
        values = self._check()
        if values is None:
            return
        changes = {name: value for name, value in values.items()
                   if self.current.get(name) is None or not math.isclose(value, self.current[name], rel_tol=1e-5)}
        self.dismiss(changes or None)
