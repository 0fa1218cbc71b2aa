"""Whether a checkpoint's weights and optimizer state fit the run its config builds, found without training:
the model and optimizer are built on PyTorch's meta device (shapes, no memory) and compared with the file.
The app asks this before it stops the current run for a checkpoint; the trainer checks the same on resume."""

from __future__ import annotations

from typing import Any

from tui_trainer.config import RunConfig


def fit_problem(config: RunConfig, payload: dict[str, Any]) -> str | None:
    """What keeps payload (a checked checkpoint) from loading into the model and optimizer config builds; None if
    it fits. Builds the dataset for its shapes (cheap for in-memory sets) and imports a model's code, so call it
    only for a config whose imports the user trusts."""
    import torch

    from tui_trainer.catalog.datasets import build_data
    from tui_trainer.catalog.models import build_model
    from tui_trainer.catalog.optimizers import build_optimizer
    from tui_trainer.engine.checkpoints import model_mismatch, optimizer_mismatch

    data = build_data(config.data, config.task, config.seed)
    with torch.device("meta"):
        model = build_model(config.model.name, config.model.import_target, config.model.options,
                            data.input_shape, data.num_outputs)
    optimizer = build_optimizer(config.optimizer.name, model.parameters(),
                                config.optimizer.model_dump(exclude={"name"}))
    return model_mismatch(model.state_dict(), payload["model"]) or optimizer_mismatch(optimizer, payload["optimizer"])
