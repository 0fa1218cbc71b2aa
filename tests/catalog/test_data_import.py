"""data.import: the user's own code makes the data (a Dataset, a pair of Datasets or DataLoaders, tensors), with
tuple and dict batches; a stored config that names data code is refused without the user's opt-in."""

from __future__ import annotations

import os
import sys
import textwrap
import time

import pytest
import torch

from tests.cli_helpers import run_main
from tui_trainer.catalog.data_import import ImportedDataError, build_imported_data
from tui_trainer.config import UntrustedCode, config_from_dict, import_targets, stored_imports

USER_CODE = """
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

CALLS = []


def tensors(samples=64, seed=0):
    CALLS.append({"seed": seed})
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, 3, generator=generator, dtype=torch.float64)
    return x, (x.sum(1) > 0).long()


class Pairs(Dataset):
    \"\"\"Samples (a, b, y): two inputs and a target.\"\"\"

    classes = ["low", "high"]

    def __init__(self, samples):
        self.a = torch.randn(samples, 2)
        self.b = torch.randn(samples, 1)

    def __len__(self):
        return len(self.a)

    def __getitem__(self, index):
        return self.a[index], self.b[index], int(self.a[index].sum() > 0)


class Named(Pairs):
    def __getitem__(self, index):
        return {"inputs": {"a": self.a[index], "b": self.b[index]}, "targets": int(self.a[index].sum() > 0)}


def per_split(split, samples=40):
    CALLS.append({"split": split})
    return Named(samples if split == "train" else 10)


def pair(samples=40):
    return Pairs(samples), Pairs(12)


def loaders(batch_size=8):
    x = torch.randn(48, 3)
    train = TensorDataset(x, (x[:, 0] > 0).long())
    train.classes = ["neg", "pos"]
    return DataLoader(train, batch_size=batch_size), DataLoader(train, batch_size=16)


class Stream(torch.utils.data.IterableDataset):
    def __iter__(self):
        return iter([(torch.zeros(3), 0)] * 8)


def endless():
    return DataLoader(Stream(), batch_size=4), DataLoader(Stream(), batch_size=4)


def broken():
    raise ValueError("no data today")


def nothing():
    return 42


class TwoInputs(nn.Module):
    def __init__(self, num_outputs):
        super().__init__()
        self.head = nn.Linear(3, num_outputs)

    def forward(self, inputs):
        a, b = (inputs["a"], inputs["b"]) if isinstance(inputs, dict) else inputs
        return self.head(torch.cat([a, b], 1))


def two_inputs(num_outputs):
    return TwoInputs(num_outputs)
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    folder = tmp_path / "code"
    folder.mkdir()
    name = f"user_data_{os.getpid()}_{time.monotonic_ns()}"
    (folder / f"{name}.py").write_text(textwrap.dedent(USER_CODE), encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    yield name
    sys.modules.pop(name, None)


def test_tensors_are_split_and_held_in_memory_and_the_seed_is_passed(user_module):
    data = build_imported_data(f"{user_module}:tensors", {"samples": 50}, 0.2, 7, "classification")
    assert data.in_memory and data.train_size == 40 and data.val_size == 10 and data.num_classes == 2
    assert data.train[0].dtype == torch.float32, "float64 inputs meet float32 weights"
    assert sys.modules[user_module].CALLS == [{"seed": 7}]


def test_a_factory_that_takes_split_is_called_for_each(user_module):
    data = build_imported_data(f"{user_module}:per_split", {}, None, 0, "classification")
    assert sys.modules[user_module].CALLS == [{"split": "train"}, {"split": "val"}]
    assert data.train_size == 40 and data.val_size == 10 and data.class_names == ("low", "high")
    assert data.input_shape == (2,)


def test_a_pair_of_datasets_and_a_pair_of_loaders(user_module):
    data = build_imported_data(f"{user_module}:pair", {}, None, 0, "classification")
    assert not data.in_memory and data.train_size == 40 and data.num_outputs == 2
    loaders = build_imported_data(f"{user_module}:loaders", {"batch_size": 4}, None, 0, "classification")
    assert loaders.user_loaders and loaders.train_size == 48 and loaders.input_shape == (3,)


@pytest.mark.parametrize("target, options, fragment", [
    ("broken", {}, "raised ValueError: no data today"),
    ("nothing", {}, "returned int"),
    ("tensors", {"rows": 3}, "does not take these options"),
    ("absent", {}, "cannot import"),
    ("endless", {}, "without a length"),
])
def test_a_factory_that_fails_is_one_line(user_module, target, options, fragment):
    with pytest.raises(ImportedDataError) as error:
        build_imported_data(f"{user_module}:{target}", options, None, 0, "classification")
    assert fragment in str(error.value) and "\n" not in str(error.value)


def preset(tmp_path, data: str, model: str) -> str:
    path = tmp_path / "mine.yaml"
    path.write_text(f"task: classification\ndata: {data}\nmodel: {model}\nloss: {{name: cross_entropy}}\n"
                    "epochs: 2\ndevice: cpu\n", encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("factory", ["pair", "per_split", "loaders"])
def test_tuple_dict_and_loader_batches_train_headless(tmp_path, user_module, factory):
    model = f"{{import: '{user_module}:two_inputs'}}" if factory != "loaders" else "{name: mlp}"
    path = preset(tmp_path, f"{{import: '{user_module}:{factory}', batch_size: 8}}", model)
    code, out, err = run_main(["--headless", "--preset", path, "--checkpoint-dir", str(tmp_path / "runs")])
    assert code == 0, (out, err)
    assert "val_accuracy" in out


def test_data_import_is_validated_like_model_import():
    base = {"task": "classification", "model": {"name": "mlp"}, "loss": {"name": "cross_entropy"}}
    for data, fragment in [({"import": "not a target"}, "package.module:factory"),
                           ({"source": "iris", "import": "a.b:c"}, "either source or import"),
                           ({}, "give a source")]:
        with pytest.raises(Exception) as error:
            config_from_dict({**base, "data": data}, source="p.yaml")
        assert "p.yaml" in str(error.value) and "data" in str(error.value) and fragment in str(error.value)


def test_listings_name_the_data_code_a_stored_config_would_run():
    assert stored_imports({"data": {"import": "pkg.data:make"}, "model": {"name": "mlp"}}) == \
        [("data.import", "pkg.data:make")]


def test_a_stored_config_naming_data_code_is_refused_without_opt_in(tmp_path):
    from tests.reliability.app_helpers import good_checkpoint
    from tui_trainer.launch import LaunchOptions, resolve_config

    payload = torch.load(good_checkpoint(tmp_path / "good"), weights_only=True)
    payload["config"] = {**payload["config"], "data": {"import": "os:system", "options": {"command": "true"}}}
    path = tmp_path / "planted.pt"
    torch.save(payload, path)
    with pytest.raises(UntrustedCode) as refused:
        resolve_config(LaunchOptions(resume=str(path)))
    assert refused.value.targets == [("data.import", "os:system")]
    config, _ = resolve_config(LaunchOptions(resume=str(path), trust_code=True))
    assert import_targets(config) == [("data.import", "os:system")]
    code, out, err = run_main(["--headless", "--resume", str(path), "--max-steps", "1"])
    assert code == 2 and "data.import 'os:system'" in err and "--trust-code" in err, (out, err)
