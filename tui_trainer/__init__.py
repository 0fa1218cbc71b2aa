"""tui-trainer: a keyboard-driven PyTorch training cockpit for the terminal."""

__version__ = "0.1.0"
