"""tui-trainer: a keyboard-driven PyTorch training cockpit for the terminal.

`import tui_trainer as tt` gives a script's own loop the cockpit (tt.init, tt.load_weights: see
tui_trainer.loop); they import torch only when first used.
"""

from typing import Any

__version__ = "0.1.0"

_LOOP_NAMES = ("init", "load_weights", "Run", "NonFiniteLoss")


def __getattr__(name: str) -> Any:
    if name in _LOOP_NAMES:
        from tui_trainer import loop

        return getattr(loop, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LOOP_NAMES])
