"""scikit-learn's bundled data files, read without importing scikit-learn.

`import sklearn.datasets` takes 1-1.5 s here (it imports scipy.stats), longer than a small run trains; the
sets themselves are CSV files of a few kilobytes inside the installed package. These readers find that package
without running it (`importlib.util.find_spec`) and read its files exactly as scikit-learn's loaders do, so the
arrays are the same bit for bit. Where a file is not where it was (another scikit-learn), they return None and
the caller uses scikit-learn's own loader.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
from pathlib import Path

import numpy as np

Table = tuple[np.ndarray, np.ndarray]
"""data (float64, samples x features) and target (int, samples)."""


def _data_folder() -> Path | None:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def read_csv_table(file_name: str) -> Table | None:
    """A set in scikit-learn's `load_csv_data` format (iris.csv, wine_data.csv, breast_cancer.csv): a header
    line `samples,features,class names...`, then one row a sample, its class last."""
    folder = _data_folder()
    path = folder / file_name if folder is not None else None
    if path is None or not path.is_file():
        return None
    with path.open(encoding="utf-8", newline="") as file:
        rows = csv.reader(file)
        header = next(rows)
        samples, features = int(header[0]), int(header[1])
        data = np.empty((samples, features))
        target = np.empty((samples,), dtype=int)
        for index, row in enumerate(rows):
            data[index] = np.asarray(row[:-1], dtype=np.float64)
            target[index] = np.asarray(row[-1], dtype=int)
    return data, target


def read_digits() -> Table | None:
    """load_digits(): digits.csv.gz, 64 pixel values then the digit on each row."""
    folder = _data_folder()
    path = folder / "digits.csv.gz" if folder is not None else None
    if path is None or not path.is_file():
        return None
    with gzip.open(path, mode="rt", encoding="utf-8") as file:
        table = np.loadtxt(file, delimiter=",")
    return table[:, :-1], table[:, -1].astype(int, copy=False)
