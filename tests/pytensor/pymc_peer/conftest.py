"""Fixtures of PyMC's own tests run against mbcore's adapter (the files here
are PyMC's, under the Apache License 2.0; each names its source and what
was adapted).

``pm.Minibatch`` is :func:`mbcore.adapters.pytensor.Minibatch` in every
test here.  The other fixtures are those of PyMC's ``tests/conftest.py``
(https://github.com/pymc-devs/pymc, Apache License 2.0, Copyright 2024 The
PyMC Developers) that the tests use, with PyMC's code: the autouse
``pytensor_config`` (rewrite errors raise) and ``exception_verbosity``, and
``strict_float32``, ``seeded_test`` and ``fail_on_warning``.  Without pymc
and pytensor (the core's environments) nothing here is collected.
"""
import importlib.util
import warnings

import numpy as np
import pytest

if importlib.util.find_spec("pytensor") is None or importlib.util.find_spec("pymc") is None:
    collect_ignore_glob = ["test_*.py"]
else:
    import pymc as pm
    import pytensor

    from mbcore.adapters.pytensor import Minibatch

    # PyTensor looks for BLAS when it first compiles C code, and warns when a
    # pip-installed PyTensor finds none; under fail_on_warning that warning
    # would fail whichever test compiles first.  Looked up once here, with
    # the warning ignored (the tests/pytensor conftest ignores it too).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "PyTensor could not link to a BLAS installation")
        pytensor.config.blas__ldflags

    @pytest.fixture(autouse=True)
    def adapter_as_pm_minibatch(monkeypatch):
        monkeypatch.setattr(pm, "Minibatch", Minibatch)

    # From PyMC's tests/conftest.py.
    @pytest.fixture(scope="function", autouse=True)
    def pytensor_config():
        config = pytensor.config.change_flags(on_opt_error="raise")
        with config:
            yield

    @pytest.fixture(scope="function", autouse=True)
    def exception_verbosity():
        config = pytensor.config.change_flags(exception_verbosity="high")
        with config:
            yield

    @pytest.fixture(scope="function", autouse=False)
    def strict_float32():
        if pytensor.config.floatX == "float32":
            config = pytensor.config.change_flags(warn_float64="raise")
            with config:
                yield
        else:
            yield

    @pytest.fixture(scope="function", autouse=False)
    def seeded_test():
        np.random.seed(20160911)

    @pytest.fixture
    def fail_on_warning():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            yield
