"""Real PyMC3 fits (``pm.fit``, ADVI) on mbcore minibatches of the bundled
regression dataset (20000 rows, y = 1.5 + X @ [2, -1, 0.5] + N(0, 0.7)).

Each fit runs 4000 Adam steps (learning rate 0.05) on batches of 500 with
``total_size`` set, and reports the mean of the approximation's means over
the last 2000 steps (iterate averaging: the last iterate alone wanders by
~0.04 at this learning rate; the average by ~0.003 across seeds).

Tolerances, stated:
- against the recorded truth: 0.03 for intercept, coefficients and sigma
  (the data's own least-squares estimates are off the truth by up to 0.014);
- against the same model fitted on the full data: 0.01.
A fit whose X and y batches are not aligned fails both by far (checked).
"""
import numpy as np
import pytest

from mbcore.adapters.theano import Minibatch, minibatches  # first: configures theano
import pymc3 as pm
import theano.tensor as tt

STEPS = 4000
BATCH = 500
TRUTH_TOL = 0.03
FULL_TOL = 0.01


class _IterateMean:
    """pm.fit callback: mean of the approximation's parameters over the last
    half of the steps."""

    def __init__(self, start):
        self.start, self.total, self.count = start, 0.0, 0

    def __call__(self, approx, losses, i):
        if i >= self.start:
            self.total = self.total + approx.params[0].get_value()
            self.count += 1


def fit(X, y, total_size, seed=1):
    with pm.Model():
        intercept = pm.Normal("intercept", 0, 10)
        coef = pm.Normal("coef", 0, 10, shape=3)
        sigma = pm.HalfNormal("sigma", 5)
        pm.Normal("obs", intercept + tt.dot(X, coef), sigma, observed=y,
                  total_size=total_size)
        avg = _IterateMean(STEPS // 2)
        approx = pm.fit(n=STEPS, method="advi", obj_optimizer=pm.adam(learning_rate=0.05),
                        random_seed=seed, progressbar=False, callbacks=[avg])
    means = approx.bij.rmap(avg.total / avg.count)
    return {"intercept": float(means["intercept"]), "coef": np.asarray(means["coef"]),
            "sigma": float(np.exp(means["sigma_log__"])), "hist": approx.hist}


@pytest.fixture(scope="module")
def fits(regression):
    X, y, n = regression["X"], regression["y"], regression["n"]
    xb, yb = minibatches(X, y, batch_size=BATCH, random_seed=7)
    # PyMC3's way: two Minibatch variables with one seed and spec.
    xs, ys = Minibatch(X, BATCH, random_seed=8), Minibatch(y, BATCH, random_seed=8)
    # Not aligned: different seeds for X and y.
    xw, yw = Minibatch(X, BATCH, random_seed=1), Minibatch(y, BATCH, random_seed=2)
    return {"minibatches": fit(xb, yb, n), "pair": fit(xs, ys, n),
            "misaligned": fit(xw, yw, n), "full": fit(X, y, None)}


def params(f):
    return np.r_[f["intercept"], f["coef"], f["sigma"]]


@pytest.mark.parametrize("kind", ["minibatches", "pair", "full"])
def test_fit_recovers_truth(fits, regression, kind):
    truth = regression["truth"]
    expected = np.r_[truth["intercept"], truth["coef"], truth["sigma"]]
    got = params(fits[kind])
    assert np.isfinite(fits[kind]["hist"]).all()
    np.testing.assert_allclose(got, expected, atol=TRUTH_TOL, rtol=0)


@pytest.mark.parametrize("kind", ["minibatches", "pair"])
def test_minibatch_fit_agrees_with_full_data_fit(fits, kind):
    np.testing.assert_allclose(params(fits[kind]), params(fits["full"]), atol=FULL_TOL,
                               rtol=0)


def test_misaligned_batches_do_not_fit(fits, regression):
    """The control: with X and y drawn from different streams, y looks like
    noise (coefficients near 0, sigma near sd(y)), so the tests above can fail."""
    bad = fits["misaligned"]
    assert np.abs(bad["coef"] - regression["truth"]["coef"]).max() > 0.3
    assert bad["sigma"] > 1.5


def test_loss_is_scaled_by_total_size(fits, regression):
    """total_size scales the minibatch log-likelihood by n / batch; PyMC3
    reports the loss divided by that same factor (its normalizing constant),
    so the minibatch loss times n / batch is the full-data loss."""
    mini = np.mean(fits["minibatches"]["hist"][-500:]) * regression["n"] / BATCH
    full = np.mean(fits["full"]["hist"][-500:])
    assert abs(mini - full) / full < 0.02


def test_fit_on_a_generator_variable(regression):
    """generator(): every ADVI step pulls the next item of a Python
    generator (here batches of [X | y] rows drawn by the core)."""
    from mbcore import Minibatch as CoreMinibatch
    from mbcore.adapters.theano import generator
    table = np.c_[regression["X"], regression["y"]]
    core = CoreMinibatch(table, batch_size=BATCH, random_seed=3)
    pulled = []

    def batches():
        for b in core:
            pulled.append(core.step)
            yield b
    v = generator(batches(), name="rows")
    with pm.Model():
        intercept = pm.Normal("intercept", 0, 10)
        coef = pm.Normal("coef", 0, 10, shape=3)
        sigma = pm.HalfNormal("sigma", 5)
        pm.Normal("obs", intercept + tt.dot(v[:, :3], coef), sigma, observed=v[:, 3],
                  total_size=regression["n"])
        assert len(pulled) == 1   # the first item (the test value), held
        approx = pm.fit(n=1500, obj_optimizer=pm.adam(learning_rate=0.05), random_seed=1,
                        progressbar=False)
    # One item per step; the first step got the held first item.
    assert len(pulled) == 1500
    means = approx.bij.rmap(approx.mean.eval())
    np.testing.assert_allclose(means["coef"], regression["truth"]["coef"], atol=0.1)
