"""A plain PyTorch training script with the cockpit added: the four lines marked `tt` are all it takes.

    python examples/own_loop.py --epochs 30          # progress lines (a bar on a terminal)
    tui-trainer runs                                 # in another terminal: it is listed
    tui-trainer attach                               # the dashboard: p pauses, the lr panel, s saves
    tui-trainer stop                                 # saves last.pt and stops it
    python examples/own_loop.py --resume last        # goes on from that last.pt

Offline and tiny: it fits y = sin(3x) + noise with a small MLP on the CPU.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import tui_trainer as tt


def data(samples: int, seed: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.rand(samples, 1, generator=generator) * 4 - 2
    targets = torch.sin(3 * inputs) + 0.05 * torch.randn(samples, 1, generator=generator)
    return TensorDataset(inputs, targets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--resume", default=None, help='a checkpoint to continue from, or "last"')
    args = parser.parse_args()

    torch.manual_seed(0)
    train = DataLoader(data(2048, seed=1), batch_size=args.batch_size, shuffle=True)
    val_inputs, val_targets = data(512, seed=2).tensors
    model = nn.Sequential(nn.Linear(1, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=args.epochs * len(train))
    loss_fn = nn.MSELoss()

    def validate() -> dict[str, torch.Tensor]:
        with torch.no_grad():
            predictions = model(val_inputs)
        return {"val_loss": loss_fn(predictions, val_targets), "val_mae": (predictions - val_targets).abs().mean()}

    run = tt.init(model=model, optimizer=optimizer, scheduler=scheduler, config=vars(args),  # tt
                  name="sine-mlp", resume=args.resume)
    for inputs, targets in run.steps(train, epochs=args.epochs, validate=validate):  # tt
        loss = loss_fn(model(inputs), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()
        run.log(loss=loss)  # tt
    run.finish()  # tt


if __name__ == "__main__":
    main()
