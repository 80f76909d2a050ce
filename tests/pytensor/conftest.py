"""Fixtures of the PyMC 5 / PyTensor adapter tests (run by ``make test-pymc``).

These tests need pymc 5 and pytensor (the ``.venv-pymc`` environment);
elsewhere they are not collected.  PyTensor's compile cache is kept inside
the environment (``<venv>/pytensor-compiledir``) unless PYTENSOR_FLAGS names
one, so the tests never depend on a warm cache in the home directory; that
must be set before pytensor is first imported, hence here.
"""
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("pytensor") is None or importlib.util.find_spec("pymc") is None:
    collect_ignore_glob = ["test_*.py"]
else:
    if "compiledir" not in os.environ.get("PYTENSOR_FLAGS", ""):
        flags = os.environ.get("PYTENSOR_FLAGS", "")
        cdir = Path(sys.prefix) / "pytensor-compiledir"
        os.environ["PYTENSOR_FLAGS"] = ",".join(filter(None, [flags, f"compiledir={cdir}"]))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)   # arviz's refactor notice
        import pymc  # noqa: F401
        import mbcore.adapters.pytensor  # noqa: F401

    def pytest_collection_modifyitems(config, items):
        for item in items:
            item.add_marker(pytest.mark.filterwarnings("ignore::FutureWarning:arviz.*"))
            # PyTensor's notice about a pip install without BLAS: not ours.
            item.add_marker(pytest.mark.filterwarnings(
                "ignore:PyTensor could not link to a BLAS installation"))


@pytest.fixture
def xy():
    """A linear regression, y = X @ [1.5, -2.0] + 0.5 + noise(0.1)."""
    rng = np.random.default_rng(20)
    X = rng.normal(size=(2000, 2))
    y = X @ np.array([1.5, -2.0]) + 0.5 + rng.normal(scale=0.1, size=2000)
    return X, y
