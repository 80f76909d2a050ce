"""Fixtures of the Theano/PyMC3 adapter tests (run by ``make test-adapter``).

These tests need theano-pymc and pymc3 (the ``.venv-pymc3`` environment).
Elsewhere (the NumPy 2 venv of ``make test-core``) they are not collected.

``mbcore.adapters.theano`` is imported here, before anything imports theano
or pymc3: it supplies the Theano flag theano-pymc needs on NumPy >= 1.23,
exactly as a user's script must do.
"""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent

if importlib.util.find_spec("theano") is None or importlib.util.find_spec("pymc3") is None:
    collect_ignore_glob = ["test_*.py"]
else:
    import warnings

    # First: configures theano.  Importing theano-pymc and pymc3 on NumPy
    # 1.23 raises DeprecationWarnings in their own modules (np.bool,
    # numpy.distutils); they are not ours to fix.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import mbcore.adapters.theano  # noqa: F401
        import pymc3  # noqa: F401

    def pytest_collection_modifyitems(config, items):
        # theano-pymc 1.1.2 and pymc3 3.11.4 call NumPy and SciPy APIs that
        # newer releases deprecate; that is theirs to fix, not ours to see.
        # Only these tests are affected; a DeprecationWarning from mbcore
        # still shows.
        marks = [pytest.mark.filterwarnings("ignore::DeprecationWarning:theano"),
                 pytest.mark.filterwarnings("ignore::DeprecationWarning:theano.*"),
                 pytest.mark.filterwarnings("ignore::DeprecationWarning:pymc3.*"),
                 pytest.mark.filterwarnings("ignore::DeprecationWarning:arviz.*"),
                 pytest.mark.filterwarnings("ignore::FutureWarning:pymc3.*"),
                 pytest.mark.filterwarnings("ignore::FutureWarning:arviz.*")]
        for item in items:
            if HERE in Path(str(item.fspath)).resolve().parents:
                for mark in marks:
                    item.add_marker(mark)


@pytest.fixture(scope="session")
def regression():
    """The bundled regression dataset and its recorded truth."""
    import mbcore
    table = np.loadtxt(mbcore.get_data("regression.csv"), delimiter=",", skiprows=1)
    truth = json.load(mbcore.get_data("regression.json"))
    return {"X": np.ascontiguousarray(table[:, :3]), "y": np.ascontiguousarray(table[:, 3]),
            "truth": truth, "n": table.shape[0]}



@pytest.fixture(autouse=True)
def _restore_theano_config():
    """Isolate tests from each other's Theano settings.  pymc3 3.11.4 leaks
    ``compute_test_value="raise"`` when a Model context is re-entered while
    open (pm.fit inside ``with model:`` does that)."""
    import theano
    saved = theano.config.compute_test_value
    yield
    theano.config.compute_test_value = saved
