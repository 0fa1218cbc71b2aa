"""A tiny regression task for a script's own loop: a linear model, its optimizer, a loader of 8 batches."""

from __future__ import annotations

import pytest
import torch


class Task:
    def __init__(self, batches: int = 8, lr: float = 0.05) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Linear(4, 1)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9)
        inputs = torch.randn(batches * 4, 4)
        targets = inputs.sum(1, keepdim=True)
        self.loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(inputs, targets), batch_size=4)

    def train_step(self, batch) -> torch.Tensor:
        inputs, targets = batch
        loss = torch.nn.functional.mse_loss(self.model(inputs), targets)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        return loss


@pytest.fixture
def task() -> Task:
    return Task()


@pytest.fixture
def runs_dir(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    return folder
