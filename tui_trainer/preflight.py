"""What can be checked about a run on this machine before anything is stopped, created or started for it.

Each problem is a ConfigError naming the field it belongs to, so the setup screen marks that field whichever
way the run was to be hosted, the command line names it in one line, and no run folder is made for a run
that could not start. The engine checks the same things again when it sets up (a run it is handed directly).
"""

from __future__ import annotations

import importlib.util
import sys

from tui_trainer.config import ConfigError, RunConfig


def check_run(config: RunConfig, source: str = "", *, train_size: int | None = None,
              probe_devices: bool = True) -> None:
    """Raise ConfigError when this machine cannot train config as it stands: its device, its precision, a
    library its data needs, and (given the training set's size) its batch size. probe_devices=False skips
    what needs torch imported (a process that has not imported it yet and should not wait for it)."""
    check_data(config, source, train_size=train_size)
    check_environment(config, source, probe_devices=probe_devices)


def check_environment(config: RunConfig, source: str = "", *, probe_devices: bool = True) -> None:
    """Raise ConfigError when this machine cannot train config as it stands (its device, its precision)."""
    if probe_devices or "torch" in sys.modules:
        device = _resolve(config.device, source)
    else:
        device = "" if config.device == "auto" else config.device  # "auto" is unknown until torch says
    if config.precision == "fp16" and device and not device.startswith("cuda"):
        raise ConfigError(source, "precision", f"fp16 needs a CUDA device; this run would be on {device}; "
                                               "use bf16 or fp32")


def _resolve(spec: str, source: str) -> str:
    from tui_trainer.engine.devices import DeviceError, resolve_device

    try:
        return resolve_device(spec)
    except DeviceError as error:
        raise ConfigError(source, "device", str(error).partition(": ")[2]) from None


def check_data(config: RunConfig, source: str = "", *, train_size: int | None = None) -> None:
    """The data's own library is installed (torchvision for its data sets), and a batch fits the training set
    (when its size is known: counting it means building the data)."""
    from tui_trainer.catalog.datasets import DATASETS, VisionOptions

    spec = DATASETS.get(config.data.source)
    if spec is not None and issubclass(spec.options, VisionOptions) and importlib.util.find_spec("torchvision") is None:
        raise ConfigError(source, "data.source", f"{config.data.source} needs torchvision, which is not installed "
                                                 "here: pip install 'tui-trainer[vision]'")
    if train_size is not None and config.data.batch_size > train_size:
        raise ConfigError(source, "data.batch_size", f"{config.data.batch_size} is larger than the training set "
                                                     f"({train_size} samples)")
