"""A pytest plugin that runs PyMC3's own tests against mbcore's drop-ins.

Loaded with ``-p pymc3_dropin`` (this directory on ``PYTHONPATH``) before
PyMC3's test modules are imported, it replaces, wherever PyMC3 binds them,
exactly the names mbcore provides, and nothing else:

- ``Minibatch``, ``align_minibatches``   -> ``mbcore.adapters.theano``'s
- ``generator``, ``GeneratorOp``          -> ``mbcore.adapters.theano``'s
- ``GeneratorAdapter``                    -> ``mbcore.GeneratorAdapter``

``pymc3_xfail.XFAIL`` names the statistical tests that compare a fit at one
fixed seed with a tolerance that PyMC3's own random stream happens to meet;
they are marked xfail (not strict), with their failure rates over many seeds
(``pymc3_seed_rates.py``) in the reason.
"""
import os
import re
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import mbcore
    import mbcore.adapters.theano as adapter
    import pymc3
    import pymc3.data
    import pymc3.model
    import pymc3.theanof

import pytest

# (module, name) -> mbcore's object
REPLACED = {
    (pymc3, "Minibatch"): adapter.Minibatch,
    (pymc3.data, "Minibatch"): adapter.Minibatch,
    (pymc3, "align_minibatches"): adapter.align_minibatches,
    (pymc3.data, "align_minibatches"): adapter.align_minibatches,
    (pymc3, "generator"): adapter.generator,
    (pymc3.theanof, "generator"): adapter.generator,
    (pymc3.model, "generator"): adapter.generator,     # observed=<generator> goes here
    (pymc3.theanof, "GeneratorOp"): adapter.GeneratorOp,
    (pymc3, "GeneratorAdapter"): mbcore.GeneratorAdapter,
    (pymc3.data, "GeneratorAdapter"): mbcore.GeneratorAdapter,
    (pymc3.theanof, "GeneratorAdapter"): mbcore.GeneratorAdapter,
}

_ORIGINAL = {}
for (module, name), new in REPLACED.items():
    _ORIGINAL[(module, name)] = getattr(module, name)
    setattr(module, name, new)

from pymc3_xfail import XFAIL  # noqa: E402  (this directory is on PYTHONPATH)


# -- seed sweeps (pymc3_seed_rates.py) -------------------------------------
# With PYMC3_DROPIN_SEEDS="a-b" the tests selected by -k are run once per
# Minibatch seed a..b-1 (the default random_seed of every Minibatch built in
# the test; everything else as in the test).  PYMC3_DROPIN_STREAM=pymc3 runs
# them with PyMC3's own Minibatch instead of mbcore's.

def _sweep():
    spec = os.environ.get("PYMC3_DROPIN_SEEDS")
    if not spec:
        return None
    a, b = (int(x) for x in spec.split("-"))
    return list(range(a, b))


_seed = [None]


def _seeded(cls):
    """``cls`` with the sweep's seed as the default ``random_seed``."""
    class Seeded(cls):
        def __init__(self, *args, **kwargs):
            if _seed[0] is not None and "random_seed" not in kwargs and len(args) < 6:
                kwargs["random_seed"] = _seed[0]
            super().__init__(*args, **kwargs)
    Seeded.__name__ = Seeded.__qualname__ = cls.__name__
    return Seeded


if _sweep() is not None:
    stream = os.environ.get("PYMC3_DROPIN_STREAM", "mbcore")
    if stream not in ("mbcore", "pymc3"):
        raise ValueError(f"PYMC3_DROPIN_STREAM must be mbcore or pymc3, got {stream!r}")
    if stream == "mbcore":
        base = adapter.Minibatch
    else:
        class base(_ORIGINAL[(pymc3.data, "Minibatch")]):
            # PyMC3's Minibatch indexes its data with a list ([Ellipsis]),
            # which NumPy 1.23 refuses; a tuple is what it means.  Its
            # random stream is untouched.
            @staticmethod
            def make_static_slices(user_size):
                slc = _ORIGINAL[(pymc3.data, "Minibatch")].make_static_slices(user_size)
                return tuple(slc) if isinstance(slc, list) else slc
    seeded = _seeded(base)
    for module in (pymc3, pymc3.data):
        module.Minibatch = seeded


@pytest.fixture
def dropin_seed(request):
    return getattr(request, "param", None)


@pytest.fixture(autouse=True)
def _dropin_set_seed(dropin_seed):
    _seed[0] = dropin_seed
    yield
    _seed[0] = None


def pytest_generate_tests(metafunc):
    seeds = _sweep()
    if seeds is not None and "dropin_seed" in metafunc.fixturenames:
        metafunc.parametrize("dropin_seed", seeds, indirect=True,
                             ids=[f"seed{s}" for s in seeds])


def pytest_collection_modifyitems(config, items):
    for item in items:
        nodeid = re.sub(r"^.*?(?=test_\w+\.py::)", "", item.nodeid)
        if _sweep() is not None:
            nodeid = re.sub(r"-?seed\d+(?=\])", "", nodeid).replace("[]", "")
        reason = XFAIL.get(nodeid)
        if reason is not None:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=False))


def pytest_report_header(config):
    return ["pymc3_dropin: " + ", ".join(sorted({f"{m.__name__}.{n}" for m, n in REPLACED}))]
