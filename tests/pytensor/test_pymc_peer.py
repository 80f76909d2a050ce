"""PyMC's own Minibatch tests, run against mbcore's adapter.

``make test-pymc`` unpacks ``tests/test_data.py`` of the pymc sdist of the
installed version (downloaded from PyPI when the venv is built) into
``<venv>/pymc-sdist``; its ``TestMinibatch`` runs here with ``pm.Minibatch``
replaced by :func:`mbcore.adapters.pytensor.Minibatch` and nothing else
changed, but for one test adapted below.

``test_assert`` expects unequal lengths to fail lazily, with PyMC's
``AssertionError`` when the batch is evaluated; the adapter checks the
lengths of NumPy data when the variables are built and raises a
``ValueError`` there, naming both lengths (data whose length is only known
at run time is checked when the batch is drawn).  That assertion is about
when PyMC's graph notices, not about the batches, so it is adapted to accept
the earlier error with the same meaning.
"""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pymc as pm
import pytensor
import pytest

from mbcore.adapters.pytensor import Minibatch

SDIST = Path(sys.prefix) / "pymc-sdist" / f"pymc-{pm.__version__}" / "tests" / "test_data.py"
if not SDIST.exists():
    raise RuntimeError(
        f"PyMC's tests/test_data.py not found at {SDIST}: make test-pymc unpacks it from the "
        f"pymc {pm.__version__} sdist when it builds the venv")

_spec = importlib.util.spec_from_file_location("pymc_sdist_test_data", SDIST)
pymc_test_data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pymc_test_data)


@pytest.fixture(autouse=True)
def adapter_as_pm_minibatch(monkeypatch):
    monkeypatch.setattr(pm, "Minibatch", Minibatch)


# The sdist does not ship PyMC's tests/conftest.py; these are the settings its
# fixtures give every test (rewrite errors raise) and TestMinibatch
# (``strict_float32``: float64 is an error when floatX is float32).
@pytest.fixture(autouse=True)
def pymc_test_settings():
    with pytensor.config.change_flags(on_opt_error="raise"):
        yield


@pytest.fixture
def strict_float32():
    if pytensor.config.floatX == "float32":
        with pytensor.config.change_flags(warn_float64="raise"):
            yield
    else:
        yield


class TestPyMCMinibatch(pymc_test_data.TestMinibatch):
    def test_assert(self):
        with pytest.raises(ValueError, match=r"same length along sampled axis 0, got variable 0: 30, variable 1: 15"):
            d1, d2 = pm.Minibatch(self.data, self.data[::2], batch_size=20)
            d1.eval()


def test_peer_tests_run_against_the_adapter():
    # The replacement is in force while PyMC's tests run: their batches are ours.
    mb = pm.Minibatch(np.arange(10.0), batch_size=4)
    assert pm.Minibatch is Minibatch
    assert mb.name is not None and mb.name.startswith("minibatch")
