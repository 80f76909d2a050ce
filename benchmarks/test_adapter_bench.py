"""pytest-benchmark suite of the Theano/PyMC3 adapter (``make bench``).

Run in the PyMC3 venv; writes bench-out/adapter.json, which report.py merges
with the core's table.  Four kinds of case, each timing ours and the
reference in the same run:

function    a compiled ``theano.function([], batch)``: ours is
            ``mbcore.adapters.theano.Minibatch(data, b)``; the reference is
            the graph the PyMC3 doc spells out (pm.Minibatch itself raises on
            NumPy 1.23):
            ``shared[tt_rng().uniform(size=(b,), low=0, high=n - 1e-10).astype('int64')]``.
grid        the core's grid (cases.GRID) as compiled functions: our adapter
            and the reference graph, so the table has a reference column
            for every case the core is measured on.
memory      the core's 2 GiB float64 case: time per batch, with the
            resident-memory growth of 100 batches (benchmarks/memory.py,
            fresh process) beside it.
advi        one ADVI step (the function pm.fit calls each iteration: ELBO
            gradient and Adam update) of a linear regression on aligned X/y
            minibatches with total_size: ours from ``minibatches(X, y)``, the
            reference with one index vector for X and y, as above.

pytest-benchmark times one side after the other, so a slow spell of the
shared machine can land on one side only: the test of the adapter side also
times both sides in turn (``benchmarks/timing.py, interleaved_min``) and records
those times (``extra_info['interleaved_adapter']``), from which report.py
computes the ``vs reference`` ratio.

Data of the function and ADVI cases: 1e6 rows.  The function cases take a
vector (width 1, like the core grid's n=1e6 w=1 cases); the ADVI cases a
regression with 3 features generated from the bundled dataset's recorded
truth (y = 1.5 + X @ [2, -1, 0.5] + N(0, 0.7)).  floatX is Theano's default
(float64).
"""
import functools
import importlib.util
import pathlib

import numpy as np
import pytest

if importlib.util.find_spec("theano") is None or importlib.util.find_spec("pymc3") is None:
    pytest.skip("the adapter benchmarks need theano-pymc and pymc3 (make bench runs them "
                "in .venv-pymc3)", allow_module_level=True)

import warnings  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from mbcore.adapters.theano import Minibatch, minibatches  # first: configures theano
    import pymc3 as pm
    import theano

    _spec = importlib.util.spec_from_file_location(
        "pymc3_demo", pathlib.Path(__file__).resolve().parent.parent / "examples" / "pymc3_demo.py")
    demo = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(demo)

from cases import GRID, TABLE_ROUNDS, interleaved_min, make_data, regression_data  # noqa: E402
from cases import case_id as grid_case_id  # noqa: E402

N = 10**6
FUNCTION_CASES = [(N, 1, 128), (N, 1, 10**5)]   # (rows, width, batch)
ADVI_CASES = [(N, 3, 128), (N, 3, 10**5)]


def _num(v):
    return f"{v:.0e}".replace("e+0", "e") if v >= 10**4 else str(v)


def case_id(kind, case):
    """'function n=1e6 w=1 b=128' etc.: the row label in report.py's table."""
    n, w, b = case
    return f"{kind} n={_num(n)} w={w} b={_num(b)}"


def reference_index(n, b):
    """The PyMC3 doc's index vector: a float uniform truncated to int64 (with
    test values, as pm.Minibatch builds it: PyMC3 models need them)."""
    with theano.config.change_flags(compute_test_value="raise"):
        return pm.tt_rng().uniform(size=(b,), low=0, high=n - 1e-10).astype("int64")


@functools.lru_cache(maxsize=None)
def vector_data(n):
    return np.random.default_rng(0).random(n)


def function_impls(case):
    """{'ours': f, 'reference': g}: compiled functions returning a batch."""
    n, w, b = case
    data = vector_data(n) if w == 1 else np.random.default_rng(0).random((n, w))
    ours = theano.function([], Minibatch(data, batch_size=b, random_seed=0))
    shared = theano.shared(data)
    reference = theano.function([], shared[reference_index(n, b)])
    return {"ours": ours, "reference": reference}


def grid_impls(case):
    """{'adapter': f, 'reference': g} for a case of the core's grid."""
    n, w, b = case
    data = make_data(n, w)
    adapter = theano.function([], Minibatch(data, batch_size=b, random_seed=0))
    reference = theano.function([], theano.shared(data)[reference_index(n, b)])
    return {"adapter": adapter, "reference": reference}


def advi_step(Xb, yb, n):
    """The step function pm.fit runs each iteration, for the demo's regression
    model (examples/pymc3_demo.py)."""
    return demo.advi_step(demo.build_model(Xb, yb, n), seed=1)


def advi_impls(case):
    n, w, b = case
    X, y = regression_data(n)
    assert X.shape[1] == w
    xb, yb = minibatches(X, y, batch_size=b, random_seed=0)
    ours = advi_step(xb, yb, n)
    ridx = reference_index(n, b)
    with theano.config.change_flags(compute_test_value="raise"):
        xr, yr = theano.shared(X)[ridx], theano.shared(y)[ridx]
    reference = advi_step(xr, yr, n)
    return {"ours": ours, "reference": reference}


@functools.lru_cache(maxsize=None)
def cached_impls(kind, case):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return {"function": function_impls, "advi": advi_impls, "grid": grid_impls}[kind](case)


# Row labels in report.py's table: "ours" there is the core's next(mb).
LABEL = {"ours": "adapter", "reference": "reference"}


def record_interleaved(benchmark, impls, impl):
    """On the adapter side's test, time both sides in turn and record it."""
    if LABEL.get(impl, impl) == "adapter":
        benchmark.extra_info["interleaved_adapter"] = interleaved_min(
            {LABEL.get(k, k): f for k, f in impls.items()}, rounds=TABLE_ROUNDS)


@pytest.mark.parametrize("impl", ["adapter", "reference"])
@pytest.mark.parametrize("case", GRID, ids=grid_case_id)
def test_grid(benchmark, case, impl):
    n, w, b = case
    impls = cached_impls("grid", case)
    fn = impls[impl]
    benchmark.group = grid_case_id(case)
    benchmark.extra_info.update(case=grid_case_id(case), impl=impl, n=n, width=w, batch=b,
                                kind="grid")
    record_interleaved(benchmark, impls, impl)
    assert benchmark(fn).shape[0] == b


@pytest.mark.parametrize("impl", ["adapter", "reference"])
def test_memory(benchmark, impl):
    """The core's memory case through Theano (floatX float64): the reference
    graph's theano.shared holds a copy of the 2 GiB array, ours reads it."""
    from test_memory_gate import measure

    n, b = 2**28, 100_000
    growth = measure(impl, gib=2, batches=100)["growth_mb"]
    data = np.ones(n)
    impls = {"adapter": lambda: theano.function([], Minibatch(data, batch_size=b,
                                                               dtype="float64")),
             "reference": lambda: theano.function([], theano.shared(data)[reference_index(n, b)])}
    # Both sides (4 GiB with the reference's copy) only for the test that
    # times them in turn.
    impls = {k: make() for k, make in impls.items() if impl == "adapter" or k == impl}
    case = "2 GiB float64, b=1e5"
    benchmark.group = case
    benchmark.extra_info.update(case=case, impl=impl, kind="memory", n=n, width=1, batch=b,
                                peak_rss_mb=growth)
    record_interleaved(benchmark, impls, impl)
    assert benchmark(impls[impl]).shape == (b,)
    del impls, data


@pytest.mark.parametrize("impl", ["ours", "reference"])
@pytest.mark.parametrize("case", FUNCTION_CASES, ids=lambda c: case_id("function", c))
def test_function(benchmark, case, impl):
    n, w, b = case
    impls = cached_impls("function", case)
    fn = impls[impl]
    benchmark.group = case_id("function", case)
    benchmark.extra_info.update(case=case_id("function", case), impl=LABEL[impl], n=n,
                                batch=b, width=w, kind="theano-function")
    record_interleaved(benchmark, impls, impl)
    out = benchmark(fn)
    assert out.shape == (b,)


@pytest.mark.parametrize("impl", ["ours", "reference"])
@pytest.mark.parametrize("case", ADVI_CASES, ids=lambda c: case_id("advi", c))
def test_advi_step(benchmark, case, impl):
    n, w, b = case
    impls = cached_impls("advi", case)
    fn = impls[impl]
    benchmark.group = case_id("advi", case)
    benchmark.extra_info.update(case=case_id("advi", case), impl=LABEL[impl], n=n,
                                batch=b, width=w, kind="pymc3-advi-step")
    record_interleaved(benchmark, impls, impl)
    loss = benchmark(fn)
    assert np.isfinite(loss)
