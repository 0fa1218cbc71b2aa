"""What can be checked about a run on this machine before anything is stopped or started for it."""

from __future__ import annotations

from tui_trainer.config import ConfigError, RunConfig


def check_environment(config: RunConfig, source: str = "") -> None:
    """Raise ConfigError when this machine cannot train config as it stands (its device, its precision)."""
    from tui_trainer.engine.devices import DeviceError, resolve_device

    try:
        device = resolve_device(config.device)
    except DeviceError as error:
        raise ConfigError(source, "device", str(error).partition(": ")[2]) from None
    if config.precision == "fp16" and not device.startswith("cuda"):
        raise ConfigError(source, "precision", f"fp16 needs a CUDA device; this run would be on {device}; "
                                               "use bf16 or fp32")
