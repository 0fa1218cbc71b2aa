"""A user's own training script, as the PyTorch tutorials write one: the opponent of overhead.py's whole-command
and per-step figures. It imports nothing of tui-trainer (its imports are torch, and scikit-learn where the data
comes from there), builds the same data and model a preset describes, trains the same epochs with a DataLoader,
validates each epoch, prints a line per epoch, and saves its model once at the end with torch.save.

Run: python benchmarks/tutorial_script.py SPEC.json OUT.pt
SPEC (overhead.tutorial_spec writes it): {"dataset", "options", "val_split", "seed", "batch_size", "task",
"model", "model_options", "loss", "optimizer", "hyperparameters", "epochs", "device"}.
Its last line is one JSON object: the seconds each epoch's training steps took, and their steps.
"""

from __future__ import annotations

import json
import math
import sys
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def split(x, y, val_split, seed):
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_val = max(1, round(len(x) * val_split))
    return (x[order[n_val:]], y[order[n_val:]]), (x[order[:n_val]], y[order[:n_val]])


def standardize(train, val):
    mean, std = train.mean(0, keepdim=True), train.std(0, keepdim=True).clamp_min(1e-8)
    return (train - mean) / std, (val - mean) / std


def load_data(spec):
    name, options, seed = spec["dataset"], spec["options"], spec["seed"]
    standardize_x, standardize_y = True, name == "diabetes"
    if name in ("digits", "iris", "wine", "breast_cancer", "diabetes"):
        import sklearn.datasets

        data = getattr(sklearn.datasets, f"load_{name}")()
        x = data.images.reshape(-1, 1, 8, 8) / 16.0 if name == "digits" else data.data
        y = data.target
        standardize_x = name != "digits"
    elif name == "spirals":
        generator = torch.Generator().manual_seed(seed)
        arms, per_arm = options.get("arms", 3), options.get("samples", 3000) // options.get("arms", 3)
        radius = torch.linspace(0.05, 1.0, per_arm).repeat(arms)
        y = torch.arange(arms).repeat_interleave(per_arm)
        angle = (radius * options.get("turns", 1.5) * 2 * math.pi + y * 2 * math.pi / arms
                 + torch.randn(len(radius), generator=generator) * options.get("noise", 0.2))
        x = torch.stack([radius * torch.sin(angle), radius * torch.cos(angle)], dim=1)
        standardize_x = False
    elif name == "sine":
        generator = torch.Generator().manual_seed(seed)
        low, high = options.get("x_range", [-math.pi, math.pi])
        x = torch.rand(options.get("samples", 2000), 1, generator=generator) * (high - low) + low
        y = (torch.sin(x * options.get("frequency", 1.0))
             + torch.randn(x.shape, generator=generator) * options.get("noise", 0.05)).squeeze(1)
    else:
        raise SystemExit(f"tutorial_script: no recipe for the dataset {name!r}")
    x = torch.as_tensor(x, dtype=torch.float32)
    if spec["task"] == "classification":
        y = torch.as_tensor(y, dtype=torch.int64)
    else:
        y = torch.as_tensor(y, dtype=torch.float32).reshape(-1, 1)
    (train_x, train_y), (val_x, val_y) = split(x, y, spec["val_split"] or 0.2, seed)
    if standardize_x:
        train_x, val_x = standardize(train_x, val_x)
    if standardize_y:
        train_y, val_y = standardize(train_y, val_y)
    outputs = int(y.max()) + 1 if spec["task"] == "classification" else 1
    return (train_x, train_y), (val_x, val_y), outputs


def make_model(kind, options, input_shape, outputs):
    features = math.prod(input_shape)
    if kind == "linear":
        return nn.Sequential(nn.Flatten(), nn.Linear(features, outputs))
    if kind == "mlp":
        activation = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
        layers, width = [nn.Flatten()], features
        for hidden in options.get("hidden", [128, 64]):
            layers.append(nn.Linear(width, hidden))
            if options.get("batchnorm"):
                layers.append(nn.BatchNorm1d(hidden))
            layers.append(activation[options.get("activation", "relu")]())
            if options.get("dropout"):
                layers.append(nn.Dropout(options["dropout"]))
            width = hidden
        return nn.Sequential(*layers, nn.Linear(width, outputs))
    if kind == "cnn":
        channels, height, width = input_shape
        kernel = options.get("kernel_size", 3)
        layers = []
        for out_channels in options.get("channels", [32, 64]):
            layers.append(nn.Conv2d(channels, out_channels, kernel, padding=kernel // 2))
            if options.get("batchnorm", True):
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU())
            if min(height, width) >= 4:
                layers.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            channels = out_channels
        return nn.Sequential(*layers, nn.Flatten(), nn.Dropout(options.get("dropout", 0.25)),
                             nn.Linear(channels * height * width, options.get("hidden", 128)), nn.ReLU(),
                             nn.Linear(options.get("hidden", 128), outputs))
    raise SystemExit(f"tutorial_script: no recipe for the model {kind!r}")


def main() -> None:
    spec_path, out_path = sys.argv[1], sys.argv[2]
    with open(spec_path) as file:
        spec = json.load(file)
    torch.manual_seed(spec["seed"])
    (train_x, train_y), (val_x, val_y), outputs = load_data(spec)
    device = torch.device(spec.get("device", "cpu"))
    model = make_model(spec["model"], spec["model_options"], tuple(train_x.shape[1:]), outputs).to(device)
    hyperparameters = dict(spec["hyperparameters"])
    if "betas" in hyperparameters:
        hyperparameters["betas"] = tuple(hyperparameters["betas"])
    optimizer = getattr(torch.optim, spec["optimizer"])(model.parameters(), **hyperparameters)
    loss_fn = nn.CrossEntropyLoss() if spec["loss"] == "cross_entropy" else nn.MSELoss()
    classification = spec["task"] == "classification"
    batch = spec["batch_size"]
    loader = DataLoader(TensorDataset(train_x, train_y), batch_size=batch, shuffle=True,
                        drop_last=len(train_x) % batch == 1)  # a batch of one breaks batchnorm
    val_loader = DataLoader(TensorDataset(val_x, val_y), batch_size=batch)
    epoch_s, epoch_steps = [], []
    for epoch in range(spec["epochs"]):
        model.train()
        running_loss, steps = 0.0, 0
        started = time.perf_counter()
        for inputs, targets in loader:
            inputs, targets = inputs.to(device), targets.to(device)
            optimizer.zero_grad()
            loss = loss_fn(model(inputs), targets)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            steps += 1
        epoch_s.append(time.perf_counter() - started)
        epoch_steps.append(steps)
        model.eval()
        val_loss, correct = 0.0, 0
        with torch.no_grad():
            for inputs, targets in val_loader:
                inputs, targets = inputs.to(device), targets.to(device)
                predictions = model(inputs)
                val_loss += loss_fn(predictions, targets).item() * len(targets)
                if classification:
                    correct += (predictions.argmax(1) == targets).sum().item()
        accuracy = f"  val accuracy {correct / len(val_x):.3f}" if classification else ""
        print(f"epoch {epoch + 1}: train loss {running_loss / steps:.4f}  val loss {val_loss / len(val_x):.4f}"
              f"{accuracy}", flush=True)
    torch.save(model.state_dict(), out_path)
    print(json.dumps({"epoch_train_s": epoch_s, "epoch_steps": epoch_steps}))


if __name__ == "__main__":
    main()
