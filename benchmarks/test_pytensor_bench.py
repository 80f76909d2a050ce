"""pytest-benchmark suite of the PyMC 5 / PyTensor adapter (``make bench``).

Run in the PyMC 5 venv (``.venv-pymc``).  Each case compiles ours and
``pm.Minibatch`` in the same process:

function    a compiled ``pytensor.function([], batch)`` over a (1e6,) float64
            vector (``pymc.compile`` for pm.Minibatch, which only advances its
            generator through PyMC's compile path), with ``trust_input``, on
            the C backend (PyTensor's default), on Numba, and on JAX when
            it is installed (not gated: there the draw is a host callback).
advi        one ADVI step (the function pm.fit calls each iteration: ELBO
            gradient and Adam update) of a linear regression on aligned X/y
            minibatches of 1e6 rows with total_size: ours from
            ``Minibatch(X, y)``, the reference from ``pm.Minibatch(X, y)``.

The data: 1e6 rows, 3 features generated from the bundled dataset's recorded
truth (y = 1.5 + X @ [2, -1, 0.5] + N(0, 0.7)), float64.
"""
import functools
import importlib.util
import warnings

import numpy as np
import pytest

if importlib.util.find_spec("pytensor") is None or importlib.util.find_spec("pymc") is None:
    pytest.skip("the PyTensor adapter benchmarks need pymc 5 (make test-pymc builds "
                ".venv-pymc)", allow_module_level=True)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import pymc as pm
    import pytensor
    import pytensor.tensor as pt

    from mbcore.adapters.pytensor import Minibatch

from cases import interleaved_min, regression_data  # noqa: E402

N = 10**6
FUNCTION_CASES = [("c", 128), ("c", 10**5), ("numba", 128), ("numba", 10**5)]
# JAX: measured (make bench), not gated; the adapter's JAX draw is a host callback.
JAX_CASES = [("jax", 128), ("jax", 10**5)] if importlib.util.find_spec("jax") else []
ADVI_CASES = [128, 10**5]
MODES = {"c": "FAST_RUN", "numba": "NUMBA", "jax": "JAX"}


def function_impls(case):
    backend, b = case
    x = np.random.default_rng(0).standard_normal(N)
    mode = MODES[backend]
    ours = pytensor.function([], Minibatch(x, batch_size=b, random_seed=1), mode=mode)
    reference = pm.compile([], pm.Minibatch(x, batch_size=b), mode=mode, random_seed=1)
    ours.trust_input = reference.trust_input = True
    if backend == "jax":
        # JAX dispatches asynchronously: time until the batch exists.
        import jax
        return {"ours": lambda: jax.block_until_ready(ours()),
                "reference": lambda: jax.block_until_ready(reference())}
    return {"ours": ours, "reference": reference}


def build_model(Xb, yb, n):
    with pm.Model() as model:
        intercept = pm.Normal("intercept", 0, 10)
        coef = pm.Normal("coef", 0, 10, shape=3)
        sigma = pm.HalfNormal("sigma", 5)
        pm.Normal("obs", intercept + pt.dot(Xb, coef), sigma, observed=yb, total_size=n)
    return model


def advi_step(model, seed=1):
    """The function pm.fit calls each iteration for ``model``."""
    with model:
        advi = pm.ADVI(random_seed=seed)
    return advi.objective.step_function(obj_optimizer=pm.adam(learning_rate=0.05),
                                        score=True)


def advi_impls(b):
    X, y = regression_data(N)
    ours = advi_step(build_model(*Minibatch(X, y, batch_size=b, random_seed=0), N))
    reference = advi_step(build_model(*pm.Minibatch(X, y, batch_size=b), N))
    return {"ours": ours, "reference": reference}


@functools.lru_cache(maxsize=None)
def cached_impls(kind, case):
    return {"function": function_impls, "advi": advi_impls}[kind](case)


def case_id(kind, case):
    if kind == "function":
        return f"function-{case[0]}-b{case[1]}"
    return f"advi-b{case}"


@pytest.mark.parametrize("impl", ["ours", "reference"])
@pytest.mark.parametrize("case", FUNCTION_CASES + JAX_CASES,
                         ids=lambda c: case_id("function", c))
def test_function(benchmark, case, impl):
    impls = cached_impls("function", case)
    record(benchmark, "pymc5-function", case_id("function", case), impl, impls)
    benchmark(impls[impl])


@pytest.mark.parametrize("impl", ["ours", "reference"])
@pytest.mark.parametrize("case", ADVI_CASES, ids=lambda c: case_id("advi", c))
def test_advi_step(benchmark, case, impl):
    impls = cached_impls("advi", case)
    record(benchmark, "pymc5-advi-step", case_id("advi", case), impl, impls)
    benchmark(impls[impl])


def record(benchmark, kind, case, impl, impls):
    """The row report.py puts this case in: ours in the adapter column,
    pm.Minibatch in the reference column, the ratio from both timed in
    turn (interleaved, recorded by the ours test)."""
    name = {"ours": "adapter", "reference": "reference"}[impl]
    benchmark.extra_info.update(case=f"pymc5 {case}", impl=name, kind=kind)
    if impl == "ours":
        t = interleaved_min(impls)
        benchmark.extra_info["interleaved_adapter"] = {"adapter": t["ours"],
                                                       "reference": t["reference"]}
