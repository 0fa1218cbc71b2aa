"""Models: each builds for its input and gives one output per class; a user's own factory by import."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tui_trainer.catalog.models import MODELS, ImportedModelError, build_imported, build_model
from tui_trainer.config import ConfigError, config_from_dict


def forward(model, input_shape, batch=4):
    model.eval()
    with torch.no_grad():
        return model(torch.randn(batch, *input_shape))


@pytest.mark.parametrize("input_shape", [(1, 8, 8), (3, 32, 32), (1, 28, 28), (3, 5, 7), (1, 2, 2), (2, 64, 48)])
def test_cnn_fits_its_input(input_shape):
    model = build_model("cnn", None, {}, input_shape, 10)
    assert forward(model, input_shape).shape == (4, 10)


def test_cnn_options():
    model = build_model("cnn", None, {"channels": [4, 8, 16], "kernel_size": 5, "batchnorm": False, "dropout": 0.5,
                                      "hidden": 7}, (3, 32, 32), 3)
    convs = [layer for layer in model.modules() if isinstance(layer, nn.Conv2d)]
    assert [conv.out_channels for conv in convs] == [4, 8, 16]
    assert all(conv.kernel_size == (5, 5) for conv in convs)
    assert not any(isinstance(layer, nn.BatchNorm2d) for layer in model.modules())
    assert any(isinstance(layer, nn.Dropout) and layer.p == 0.5 for layer in model.modules())
    assert forward(model, (3, 32, 32)).shape == (4, 3)
    with_bn = build_model("cnn", None, {}, (1, 8, 8), 10)
    assert sum(isinstance(layer, nn.BatchNorm2d) for layer in with_bn.modules()) == 2


@pytest.mark.parametrize("input_shape", [(4,), (1, 8, 8), (13,)])
def test_linear(input_shape):
    model = build_model("linear", None, {}, input_shape, 3)
    linears = [layer for layer in model.modules() if isinstance(layer, nn.Linear)]
    assert len(linears) == 1 and linears[0].out_features == 3
    assert forward(model, input_shape).shape == (4, 3)


@pytest.mark.parametrize(("activation", "cls"), [("relu", nn.ReLU), ("gelu", nn.GELU), ("tanh", nn.Tanh),
                                                 ("sigmoid", nn.Sigmoid)])
def test_mlp_options(activation, cls):
    model = build_model("mlp", None, {"hidden": [16, 8], "activation": activation, "dropout": 0.3, "batchnorm": True},
                        (2,), 1)
    assert [layer.out_features for layer in model.modules() if isinstance(layer, nn.Linear)] == [16, 8, 1]
    assert sum(isinstance(layer, cls) for layer in model.modules()) == 2
    assert sum(isinstance(layer, nn.BatchNorm1d) for layer in model.modules()) == 2
    assert sum(isinstance(layer, nn.Dropout) for layer in model.modules()) == 2
    assert forward(model, (2,)).shape == (4, 1)


def test_mlp_without_hidden_layers_and_on_images():
    assert forward(build_model("mlp", None, {"hidden": []}, (3,), 2), (3,)).shape == (4, 2)
    assert forward(build_model("mlp", None, {}, (1, 8, 8), 10), (1, 8, 8)).shape == (4, 10)
    plain = build_model("mlp", None, {"hidden": [8]}, (3,), 2)
    assert not any(isinstance(layer, (nn.Dropout, nn.BatchNorm1d)) for layer in plain.modules())


def test_catalog_lists_the_promised_models():
    assert set(MODELS) == {"linear", "mlp", "cnn"}
    assert MODELS["cnn"].needs_image and not MODELS["mlp"].needs_image


def test_cnn_on_tabular_data_is_a_config_error():
    raw = {"task": "classification", "data": {"source": "iris"}, "model": {"name": "cnn"},
           "loss": {"name": "cross_entropy"}}
    with pytest.raises(ConfigError) as caught:
        config_from_dict(raw, source="p.yaml")
    assert str(caught.value) == ("p.yaml: model.name: 'cnn' needs image data; dataset 'iris' is tabular "
                                 "(use linear or mlp)")


# ---------------------------------------------------------------- import: "package.module:factory"

FACTORIES = """
import torch
from torch import nn


def with_shape(input_shape, num_outputs, width=8):
    features = 1
    for dim in input_shape:
        features *= dim
    return nn.Sequential(nn.Flatten(), nn.Linear(features, width), nn.ReLU(), nn.Linear(width, num_outputs))


def any_kwargs(**kwargs):
    model = nn.Linear(4, kwargs["num_outputs"])
    model.seen = kwargs
    return model


def own_only(size):
    return nn.Linear(size, size)


def not_a_module(input_shape, num_outputs):
    return "a string"


class Model(nn.Module):
    def __init__(self, input_shape, num_outputs, scale=1.0):
        super().__init__()
        self.linear = nn.Linear(input_shape[0], num_outputs)
        self.scale = scale

    def forward(self, x):
        return self.linear(x) * self.scale
"""


def test_import_factory_gets_shape_and_outputs(user_module):
    name = user_module(FACTORIES)
    model = build_model(None, f"{name}:with_shape", {"width": 5}, (1, 8, 8), 10)
    assert forward(model, (1, 8, 8)).shape == (4, 10)
    assert model[1].out_features == 5


def test_import_factory_with_var_kwargs_and_a_class(user_module):
    name = user_module(FACTORIES)
    model = build_imported(f"{name}:any_kwargs", {"extra": 1}, (4,), 3)
    assert model.seen == {"extra": 1, "input_shape": (4,), "num_outputs": 3}
    model = build_imported(f"{name}:Model", {"scale": 2.0}, (4,), 3)
    assert model.scale == 2.0 and forward(model, (4,)).shape == (4, 3)


def test_import_factory_without_shape_arguments(user_module):
    name = user_module(FACTORIES)
    model = build_imported(f"{name}:own_only", {"size": 6}, (4,), 3)
    assert model.in_features == 6


@pytest.mark.parametrize(("target", "options", "fragment"), [
    ("no_such_module_xyz:make", {}, "model.import: cannot import 'no_such_module_xyz:make'"),
    ("{name}:missing", {}, "cannot import '{name}:missing'"),
    ("{name}:own_only", {"wrong": 1}, "model.options: {name}:own_only rejected its options"),
    ("{name}:not_a_module", {}, "returned str, not a torch.nn.Module"),
])
def test_import_errors_are_one_line(user_module, target, options, fragment):
    name = user_module(FACTORIES)
    with pytest.raises(ImportedModelError) as caught:
        build_imported(target.format(name=name), options, (4,), 3)
    text = str(caught.value)
    assert fragment.format(name=name) in text and len(text.splitlines()) == 1


@pytest.mark.parametrize(("source", "target", "fragment"), [
    ("raise RuntimeError('broken at import')\n", "factory", "importing"),
    ("def factory(**kwargs):\n    raise ValueError('bad value')\n", "factory", "raised ValueError: bad value"),
    ("factory = 5\n", "factory", "not a function or class"),
    ("def factory(:\n", "factory", "SyntaxError"),
])
def test_a_users_model_code_that_fails_is_one_line_naming_it(user_module, source, target, fragment):
    from tui_trainer.catalog.models import ImportedModelError, build_imported

    name = user_module(source)
    with pytest.raises(ImportedModelError) as refused:
        build_imported(f"{name}:{target}", {}, (4,), 3)
    text = str(refused.value)
    assert f"{name}" in text and fragment in text and len(text.splitlines()) == 1


def test_a_builtin_without_a_signature_is_one_line():
    from tui_trainer.catalog.models import ImportedModelError, build_imported

    with pytest.raises(ImportedModelError, match="builtins:RecursionError"):
        build_imported("builtins:RecursionError", {}, (4,), 3)
