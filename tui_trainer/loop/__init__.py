"""Your own training loop in the cockpit: a few lines give a script's loop the dashboard (`tui-trainer attach`),
pause, live hyperparameters, save now, stop, resume, run.json and metrics.jsonl, hosted like any run.

    import tui_trainer as tt

    run = tt.init(model=model, optimizer=opt, scheduler=sched, config=vars(args), name="gru-forecaster")
    for batch in run.steps(train_loader, epochs=20):
        loss = ...; loss.backward(); opt.step(); opt.zero_grad(); sched.step()
        run.log(loss=loss)
    run.log_validation(val_loss=v)
    run.finish()
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

    from tui_trainer.loop.run import Run

__all__ = ["init", "load_weights"]

DEFAULT_EVERY_STEPS = 50
DEFAULT_EVERY_MS = 1000.0


def init(*, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None, scheduler: Any | None = None,
         scaler: Any | None = None, config: Mapping[str, Any] | Any | None = None, name: str = "script",
         dir: str | os.PathLike[str] = "checkpoints", resume: str | os.PathLike[str] | None = None,
         extra: dict[str, Any] | None = None, quiet: bool = False, on_nan: Literal["raise", "pause"] = "raise",
         every_steps: int = DEFAULT_EVERY_STEPS, every_ms: float = DEFAULT_EVERY_MS) -> Run:
    """Host a script's run: a run folder <dir>/<name>-<time> (config.yaml, metrics.jsonl, run.json, the
    owner-only control socket), listed by `tui-trainer runs`, shown by `tui-trainer attach`, stopped by
    `tui-trainer stop` or SIGINT, SIGTERM or SIGHUP (it saves last.pt first).

    model, optimizer, scheduler, scaler (a torch.amp.GradScaler) and extra (a dict of tensors, numbers, text,
    lists and dicts) are what a checkpoint holds; a new learning rate rescales the scheduler's base values.
    config: the script's settings (a dict, or an argparse Namespace), saved as data. resume: a checkpoint's
    path, or "last" for the newest last.pt of a run of this name (none yet: a fresh start). quiet: print
    nothing (else progress lines, or a bar on a terminal). on_nan: a NaN or infinite loss raises NonFiniteLoss
    ("raise", the run marked failed) or pauses the run ("pause") until it is resumed or stopped; either way
    the last good checkpoint is kept. every_steps, every_ms: how often progress is read back and reported.
    Raises a UserError (one line) for a folder or checkpoint that cannot be used."""
    from tui_trainer.loop import state
    from tui_trainer.loop.run import Run

    if config is not None and not isinstance(config, Mapping):
        config = vars(config)
    root = Path(dir).expanduser()
    data = state.as_data(dict(config or {}))
    _refuse_torchrun()
    run = Run(model, optimizer, scheduler, scaler, data, name, root, extra, on_nan, every_steps, every_ms)
    resume_from = None
    if resume == "last":
        resume_from = state.find_last(root, name) if root.is_dir() else None
    elif resume is not None:
        resume_from = Path(resume).expanduser()
    run._open(resume_from, quiet, None)
    return run


def _refuse_torchrun() -> None:
    from tui_trainer.errors import UserError

    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        raise UserError("tt.init: a script under torchrun is not supported yet; run it in one process")


def load_weights(model: torch.nn.Module, path: str | os.PathLike[str], *, strict: bool = True) -> None:
    """Load a checkpoint's weights (or a plain torch.save(state_dict) file's) into model; weights_only always.
    Raises CheckpointError (one line naming the file)."""
    from tui_trainer.loop.state import load_weights as load

    load(model, path, strict=strict)


def __getattr__(name: str) -> Any:
    if name in ("Run", "NonFiniteLoss"):
        from tui_trainer.loop import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
