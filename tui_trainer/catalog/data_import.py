"""Data of the user's own code: `data.import: "package.module:factory"`, called with `data.options` as keyword
arguments (plus `seed` and `val_split` when its signature names them).

A factory that names `split` is called twice, with split="train" and split="val", each call returning one split.
Otherwise it returns one of:
- a map-style Dataset (val_split holds part of it out),
- a (train, val) pair of Datasets,
- a (train, val) pair of DataLoaders (iterated as they are: their own batch size, sampler and workers),
- tensors: (x, y), held in memory and split by val_split, or ((x_train, y_train), (x_val, y_val)).
A sample (and a batch) is (inputs, targets), a tuple whose last item is the target, or a dict with "targets".
"""

from __future__ import annotations

import importlib
import inspect
import logging
from typing import TYPE_CHECKING, Any

from tui_trainer.catalog.data_files import DataFileError, first_line, split_order
from tui_trainer.text import printable

if TYPE_CHECKING:
    from tui_trainer.catalog.datasets import DataBundle

log = logging.getLogger(__name__)
FIELD = "data.import"
MAX_LABEL_SCAN = 1_000_000
"""Samples read to count the classes of a Dataset that has no `classes` attribute."""


class ImportedDataError(DataFileError):
    """A user's data factory could not be imported or called, or returned what it cannot train on."""


def _factory(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ImportedDataError(FIELD, f"cannot import {target!r}: {first_line(error)}") from None
    except Exception as error:  # the module's own code failed; its traceback goes to the log
        log.exception("importing %s", target)
        raise ImportedDataError(FIELD, f"importing {target!r} failed: {type(error).__name__}: "
                                       f"{first_line(error)}") from None
    if not callable(factory):
        raise ImportedDataError(FIELD, f"{target} is {type(factory).__name__}, not a function or class")
    return factory


def _call(target: str, factory: Any, kwargs: dict[str, Any]) -> Any:
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as error:
        raise ImportedDataError("data.options", f"{target} does not take these options: {first_line(error)}") \
            from None
    except ValueError:  # a builtin without a signature: let the call say
        pass
    try:
        return factory(**kwargs)
    except Exception as error:
        log.exception("calling %s", target)
        raise ImportedDataError(FIELD, f"{target} raised {type(error).__name__}: {first_line(error)}") from None


def _parameters(factory: Any) -> tuple[set[str], bool]:
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return set(), False
    return set(parameters), any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def sample_parts(sample: Any) -> tuple[Any, Any]:
    """(inputs, targets) of a sample or a batch: the README's batch contract."""
    if isinstance(sample, dict):
        if "targets" not in sample:
            raise ImportedDataError(FIELD, f"a dict sample needs a 'targets' key; it has {sorted(map(str, sample))}")
        inputs = sample["inputs"] if "inputs" in sample else {k: v for k, v in sample.items() if k != "targets"}
        return inputs, sample["targets"]
    if isinstance(sample, (tuple, list)) and len(sample) >= 2:
        return (sample[0] if len(sample) == 2 else tuple(sample[:-1])), sample[-1]
    raise ImportedDataError(FIELD, f"a sample is (inputs, targets) or a dict with 'targets'; given "
                                   f"{type(sample).__name__}")


def _shape(value: Any) -> tuple[int, ...]:
    import torch

    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, dict) and value:
        return _shape(next(iter(value.values())))
    if isinstance(value, (tuple, list)) and value:
        return _shape(value[0])
    return ()


def _is_pair(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2


def _targets_of(dataset: Any) -> Any:
    """Every sample's class index, from `targets`/`labels` attributes or by reading the samples."""
    import torch

    for name in ("targets", "labels"):
        values = getattr(dataset, name, None)
        if values is not None and len(values) == len(dataset):
            return torch.as_tensor(values).long().reshape(-1)
    if len(dataset) > MAX_LABEL_SCAN:
        raise ImportedDataError(FIELD, f"a Dataset of {len(dataset)} samples needs a `classes` (or `targets`) "
                                       "attribute to count its classes")
    return torch.tensor([int(sample_parts(dataset[i])[1]) for i in range(len(dataset))])


def _bundle_of_datasets(train: Any, val: Any, task: str, target: str) -> DataBundle:
    from torch.utils.data import DataLoader

    from tui_trainer.catalog.datasets import DataBundle

    if isinstance(train, DataLoader):
        try:
            len(train), len(val)
            sample = next(iter(train))
        except TypeError:
            raise ImportedDataError(FIELD, f"{target} returned DataLoaders without a length (of an IterableDataset); "
                                           "give their dataset __len__ so that an epoch has an end") from None
        except StopIteration:
            raise ImportedDataError(FIELD, f"{target} returned an empty training DataLoader") from None
        base = train.dataset
    else:
        for part in (train, val):
            if not (hasattr(part, "__getitem__") and hasattr(part, "__len__")):
                raise ImportedDataError(FIELD, f"{target} returned {type(part).__name__}; a Dataset has "
                                               "__getitem__ and __len__ (an IterableDataset goes in a DataLoader)")
        if len(train) == 0:
            raise ImportedDataError(FIELD, f"{target} returned an empty training set")
        sample = train[0]
        base = train
    inputs, targets = sample_parts(sample)
    shape = _shape(inputs)
    if isinstance(train, DataLoader):
        shape = shape[1:]
    labels = None
    if task == "classification":
        classes = getattr(base, "classes", None) or getattr(getattr(base, "dataset", None), "classes", None)
        if classes is not None:
            num_classes = len(classes)
            names = tuple(printable(name) for name in classes)
        elif isinstance(train, DataLoader):
            raise ImportedDataError(FIELD, "a DataLoader's dataset needs a `classes` attribute (the class names) "
                                           "for classification")
        else:
            labels = _targets_of(train)
            num_classes, names = int(labels.max()) + 1, None
        num_outputs: int = num_classes
    else:
        import torch

        num_classes, names = None, None
        num_outputs = int(torch.as_tensor(targets).numel()) if not isinstance(train, DataLoader) \
            else int(torch.as_tensor(targets)[0].numel())
    return DataBundle(train=train, val=val, input_shape=shape, num_outputs=num_outputs, num_classes=num_classes,
                      in_memory=False, class_names=names, train_labels=labels)


def _bundle_of_tensors(train: tuple[Any, Any], val: tuple[Any, Any], task: str) -> DataBundle:
    import torch

    from tui_trainer.catalog.datasets import DataBundle

    (train_x, train_y), (val_x, val_y) = train, val
    if train_x.is_floating_point():  # float64 from NumPy would not meet a model's float32 weights
        train_x, val_x = train_x.float(), val_x.float()
    if task == "classification":
        train_y, val_y = train_y.long().reshape(-1), val_y.long().reshape(-1)
        num_classes = int(torch.cat([train_y, val_y]).max()) + 1
        num_outputs = num_classes
    else:
        train_y, val_y = (y.float().reshape(len(y), -1) for y in (train_y, val_y))
        num_classes, num_outputs = None, train_y.shape[1]
    return DataBundle(train=(train_x, train_y), val=(val_x, val_y), input_shape=tuple(train_x.shape[1:]),
                      num_outputs=num_outputs, num_classes=num_classes, in_memory=True)


def build_imported_data(target: str, options: dict[str, Any], val_split: float | None, seed: int,
                        task: str) -> DataBundle:
    import torch
    from torch.utils.data import Subset

    factory = _factory(target)
    names, takes_any = _parameters(factory)
    kwargs = dict(options)
    for name, value in (("seed", seed), ("val_split", val_split)):
        if name in names or (takes_any and name not in kwargs):
            kwargs.setdefault(name, value)
    if "split" in names:
        made = _call(target, factory, {**kwargs, "split": "train"}), _call(target, factory, {**kwargs, "split": "val"})
    else:
        made = _call(target, factory, kwargs)

    def tensors(value: Any) -> bool:
        return _is_pair(value) and all(isinstance(part, torch.Tensor) for part in value)

    if tensors(made):
        x, y = made
        if len(x) != len(y) or len(x) < 2:
            raise ImportedDataError(FIELD, f"{target} returned x of {len(x)} and y of {len(y)} samples")
        train_index, val_index = split_order(len(x), val_split or 0.2, seed)
        return _bundle_of_tensors((x[train_index], y[train_index]), (x[val_index], y[val_index]), task)
    if _is_pair(made) and all(tensors(part) for part in made):
        return _bundle_of_tensors(made[0], made[1], task)
    if _is_pair(made):
        return _bundle_of_datasets(made[0], made[1], task, target)
    if hasattr(made, "__getitem__") and hasattr(made, "__len__"):
        if len(made) < 2:
            raise ImportedDataError(FIELD, f"{target} returned a Dataset of {len(made)} samples; it needs 2 to split")
        train_index, val_index = split_order(len(made), val_split or 0.2, seed)
        bundle = _bundle_of_datasets(Subset(made, train_index.tolist()), Subset(made, val_index.tolist()), task,
                                     target)
        if bundle.class_names is None and task == "classification" and hasattr(made, "classes"):
            bundle.class_names = tuple(printable(name) for name in made.classes)
        return bundle
    raise ImportedDataError(FIELD, f"{target} returned {type(made).__name__}; allowed: a Dataset, a (train, val) "
                                   "pair of Datasets or DataLoaders, or tensors (x, y)")
