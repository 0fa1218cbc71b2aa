"""Logging tensors costs no host-device read per step: they are read back once per progress event (counted the
way the engine's own test counts them)."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

import tui_trainer as tt

READS = ("item", "tolist", "cpu", "numpy")
IMPLICIT = ("__bool__", "__float__", "__int__", "__index__")


@pytest.mark.parametrize("every_steps", [1000, 100, 25])
def test_no_per_step_host_device_read(every_steps, task, runs_dir, monkeypatch):
    inputs, targets = torch.randn(4, 4), torch.randn(4, 1)
    batches = [(inputs, targets)] * 250
    run = tt.init(model=task.model, optimizer=task.optimizer, dir=runs_dir, quiet=True, every_steps=every_steps,
                  every_ms=3_600_000)
    counts: Counter[str] = Counter()
    for name in READS + IMPLICIT:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            counts[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    for batch in run.steps(batches, epochs=4):
        loss = torch.nn.functional.mse_loss(task.model(batch[0]), batch[1])
        loss.backward()
        task.optimizer.step()
        task.optimizer.zero_grad()
        run.log(loss=loss, error=(task.model(batch[0]) - batch[1]).abs().mean(), lr=0.1)
    monkeypatch.undo()
    assert run.global_step == 1000
    assert sum(counts[name] for name in READS) <= 1000 // every_steps + 4, counts  # and one per epoch's end
    assert sum(counts[name] for name in IMPLICIT) == 0, counts
    run.finish()
