"""PyMC's machinery recognises the adapter's minibatches: real models, real
pm.fit, no mocks."""
import warnings

import numpy as np
import pymc as pm
import pytensor
import pytest

import twins
from mbcore import Minibatch as CoreMinibatch
from mbcore import minibatches
from mbcore.adapters.pytensor import Minibatch, MinibatchOp, minibatch_step
from pymc.model.transform.basic import remove_minibatched_nodes


def regression(xb, yb, n, **obs_kwargs):
    with pm.Model() as model:
        w = pm.Normal("w", 0.0, 10.0, shape=2)
        b = pm.Normal("b", 0.0, 10.0)
        pm.Normal("obs", xb @ w + b, 0.1, observed=yb, **obs_kwargs)
    return model


@pytest.mark.parametrize("mode", [None, "NUMBA"])
def test_advi_fit_recovers_the_truth_and_advances_the_stream(xy, mode):
    X, y = xy
    xb, yb = Minibatch(X, y, batch_size=64, random_seed=1)
    model = regression(xb, yb, len(y), total_size=len(y))
    kwargs = {} if mode is None else {"compile_kwargs": {"mode": mode}}
    with model:
        approx = pm.fit(3000, method="advi", random_seed=0, progressbar=False,
                        obj_optimizer=pm.adam(learning_rate=0.05), **kwargs)
    mean = approx.mean.eval()
    # The order of w and b in the flat mean follows the model's value vars.
    est = approx.sample(500, random_seed=0).posterior
    np.testing.assert_allclose(est["w"].mean(("chain", "draw")), [1.5, -2.0], atol=0.05)
    np.testing.assert_allclose(est["b"].mean(("chain", "draw")), 0.5, atol=0.05)
    assert mean.shape == (3,)
    # One batch per iteration (pm.fit also scores once at the end: >= 3000).
    assert minibatch_step(xb).get_value() >= 3000


def test_fit_sees_the_batches_of_the_core(xy):
    """The logp pm.fit evaluates at step t is that of batch t of the core."""
    X, y = xy
    xb, yb = Minibatch(X, y, batch_size=32, random_seed=8)
    model = regression(xb, yb, len(y), total_size=len(y))
    logp = model.compile_fn(model.logp())
    point = {"w": np.array([1.0, -1.0]), "b": np.array(0.3)}
    ref = minibatches(X, y, batch_size=32, random_seed=8)
    for t in range(3):
        bx, by = ref.draw(t)
        mu = bx @ point["w"] + point["b"]
        ll = -0.5 * np.sum(((by - mu) / 0.1) ** 2) - len(by) * (np.log(0.1) + 0.5 * np.log(2 * np.pi))
        prior = (pm.logp(pm.Normal.dist(0, 10), point["w"]).eval().sum()
                 + pm.logp(pm.Normal.dist(0, 10), point["b"]).eval())
        got = logp(point)
        np.testing.assert_allclose(got, prior + ll * len(y) / 32, rtol=1e-10)


def test_total_size_scales_the_likelihood(xy):
    X, y = xy
    scaled = regression(*Minibatch(X, y, batch_size=50, random_seed=2), len(y),
                        total_size=len(y))
    with pytest.warns(UserWarning, match="total_size not provided for observed variable `obs`"):
        plain = regression(*Minibatch(X, y, batch_size=50, random_seed=2), len(y))
    pt_ = {"w": np.array([1.0, -1.0]), "b": np.array(0.0)}
    a = scaled.compile_fn(scaled.logp(vars=scaled.observed_RVs))(pt_)
    b = plain.compile_fn(plain.logp(vars=plain.observed_RVs))(pt_)
    np.testing.assert_allclose(a, b * len(y) / 50, rtol=1e-10)


def test_observed_data_and_posterior_predictive_use_the_full_data(xy):
    X, y = xy
    xb, yb = Minibatch(X, y, batch_size=64, random_seed=1)
    model = regression(xb, yb, len(y), total_size=len(y))
    # extract_obs_data sees through the minibatch to the full array.
    from pymc.pytensorf import extract_obs_data
    np.testing.assert_array_equal(extract_obs_data(yb), y)
    with model:
        approx = pm.fit(1500, progressbar=False, random_seed=0,
                        obj_optimizer=pm.adam(learning_rate=0.05))
        idata = approx.sample(20, random_seed=0)
        pp = pm.sample_posterior_predictive(idata, progressbar=False, random_seed=0)
    # As with pm.Minibatch, the model as built predicts a batch ...
    assert pp.posterior_predictive["obs"].shape == (1, 20, 64)
    # ... and PyMC's remove_minibatched_nodes puts the full data back.
    full = remove_minibatched_nodes(model)
    assert not any(isinstance(n.op, MinibatchOp)
                   for n in pytensor.graph.traversal.applys_between(
                       full.free_RVs, full.observed_RVs))
    with full:
        pp = pm.sample_posterior_predictive(idata, progressbar=False, random_seed=0)
    assert pp.posterior_predictive["obs"].shape == (1, 20, len(y))
    resid = pp.posterior_predictive["obs"].mean(("chain", "draw")).values - y
    assert np.abs(resid).mean() < 0.5


def test_pm_data_and_set_data_with_a_new_length(xy):
    X, y = xy
    with pm.Model() as model:
        xd = pm.Data("xd", X[:500])
        yd = pm.Data("yd", y[:500])
        xb, yb = Minibatch(xd, yd, batch_size=20, random_seed=6)
        w = pm.Normal("w", 0.0, 10.0, shape=2)
        b = pm.Normal("b", 0.0, 10.0)
        pm.Normal("obs", xb @ w + b, 0.1, observed=yb, total_size=len(y))
    f = pytensor.function([], [xb, yb])
    a, _ = f()
    twins.assert_same_array(a, CoreMinibatch(X[:500], 20, random_seed=6).draw(0))
    with model:
        pm.set_data({"xd": X, "yd": y})
    a, c = f()
    ref = minibatches(X, y, batch_size=20, random_seed=6).draw(1)
    twins.assert_same_array(a, ref[0])
    twins.assert_same_array(c, ref[1])
    with model:
        approx = pm.fit(2000, progressbar=False, random_seed=0,
                        obj_optimizer=pm.adam(learning_rate=0.05))
    est = approx.sample(300, random_seed=0).posterior
    np.testing.assert_allclose(est["w"].mean(("chain", "draw")), [1.5, -2.0], atol=0.05)


def test_random_variables_cannot_be_minibatched():
    with pm.Model():
        mu = pm.Normal("mu", shape=(10,))
        with pytest.raises(ValueError, match=r"0: .* is not valid for Minibatch, only "
                                             r"non-random variables are allowed"):
            Minibatch(mu, batch_size=2)


def test_compiling_a_second_function_does_not_reseed(xy):
    """pm.compile reseeds RandomVariables' generators; the step is no generator."""
    X, y = xy
    xb = Minibatch(y, batch_size=8, random_seed=4)
    f = pm.compile([], xb)
    first = f()
    pm.compile([], xb.sum(), random_seed=123)
    twins.assert_same_array(f(), CoreMinibatch(y, 8, random_seed=4).draw(1))
    twins.assert_same_array(first, CoreMinibatch(y, 8, random_seed=4).draw(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pm.compile([], xb)


def test_per_axis_grammar_and_its_total_size_in_a_model():
    """Both axes of a matrix sampled ([rows, cols] from PyMC3's grammar): the
    likelihood scales by (N0 / b0) * (N1 / b1), with total_size from the
    adapter's helper."""
    from mbcore.adapters.pytensor import total_size

    Y = np.random.default_rng(3).normal(size=(60, 40))
    yb = Minibatch(Y, batch_size=[6, (4, 17)], random_seed=5)
    assert total_size(yb) == [60, 40]
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 1.0)
        pm.Normal("obs", mu, 1.0, observed=yb, total_size=total_size(yb))
    f = model.compile_fn(model.logp(vars=model.observed_RVs))
    batch = CoreMinibatch(Y, [6, (4, 17)], random_seed=5).draw(0)
    expect = (-0.5 * np.sum((batch - 0.2) ** 2) - batch.size * 0.5 * np.log(2 * np.pi))
    np.testing.assert_allclose(f({"mu": np.array(0.2)}), expect * (60 / 6) * (40 / 4),
                               rtol=1e-10)
