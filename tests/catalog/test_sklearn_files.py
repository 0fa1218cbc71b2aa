"""scikit-learn's bundled sets read without importing scikit-learn: the same arrays as its own loaders."""

import subprocess
import sys

import numpy as np
import pytest
import sklearn.datasets

from tui_trainer.catalog.sklearn_files import read_csv_table, read_digits


@pytest.mark.parametrize(("file_name", "loader"), [("iris.csv", "load_iris"), ("wine_data.csv", "load_wine"),
                                                   ("breast_cancer.csv", "load_breast_cancer")])
def test_a_bundled_table_reads_as_scikit_learn_loads_it(file_name, loader):
    expected = getattr(sklearn.datasets, loader)()
    data, target = read_csv_table(file_name)
    assert data.dtype == expected.data.dtype and np.array_equal(data, expected.data)
    assert target.dtype == expected.target.dtype and np.array_equal(target, expected.target)


def test_the_digits_read_as_scikit_learn_loads_them():
    expected = sklearn.datasets.load_digits()
    pixels, target = read_digits()
    assert np.array_equal(pixels, expected.data) and np.array_equal(target, expected.target)
    assert np.array_equal(pixels.reshape(-1, 8, 8), expected.images)


def test_a_missing_file_is_none_so_the_loader_is_used():
    assert read_csv_table("no-such-table.csv") is None


def test_iris_and_digits_train_without_importing_scikit_learn():
    code = ("import sys\nfrom tui_trainer.catalog.datasets import build_dataset\n"
            "for name in ('iris', 'digits', 'wine', 'breast_cancer'):\n    build_dataset(name, {}, None, 0)\n"
            "print('sklearn' in sys.modules, 'scipy' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
