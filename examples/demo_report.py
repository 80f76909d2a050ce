"""What the two demos share: the bundled dataset and its truth, the command
line, the regression model, ADVI with iterate averaging, least squares, the
estimates table, the plot and the step timing.

Library-agnostic: it imports neither PyMC nor Theano nor PyTensor.  Where a
part builds or runs a PyMC model (``regression_model``, ``advi_step``,
``fit``), the demo hands in its own ``pymc3`` or ``pymc`` module: the calls
used here take the same arguments in both.  The step timing uses
``benchmarks/timing.py``, the timer of every ratio mbcore reports.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

import mbcore

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from timing import interleaved_min  # noqa: E402

PARAMS = ["intercept", "coef[0]", "coef[1]", "coef[2]", "sigma"]


def load():
    """The bundled dataset (x1, x2, x3, y) and its recorded truth."""
    table = np.loadtxt(mbcore.get_data("regression.csv"), delimiter=",", skiprows=1)
    truth = json.load(mbcore.get_data("regression.json"))
    return table, truth


def true_values(truth):
    """The truth in the order of ``PARAMS``."""
    return [truth["intercept"], *truth["coef"], truth["sigma"]]


def arguments(doc, argv=None, timing_rounds=False):
    """The demos' command line; ``--timing-rounds`` where asked for."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=4000)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="demo-out")
    if timing_rounds:
        ap.add_argument("--timing-rounds", type=int, default=9)
    ap.add_argument("--no-progressbar", action="store_true")
    return ap.parse_args(argv)


class IterateAverage:
    """pm.fit callback: the mean of the approximation's parameters over the
    iterations from ``start`` on (the last iterate alone wanders at the
    demos' learning rate)."""

    def __init__(self, start):
        self.start, self.sums, self.count = start, None, 0

    def __call__(self, approx, losses, i):
        if i >= self.start:
            values = [p.get_value() for p in approx.params]
            self.sums = values if self.sums is None else [s + v for s, v in
                                                          zip(self.sums, values)]
            self.count += 1

    def apply(self, approx):
        for p, s in zip(approx.params, self.sums):
            p.set_value(s / self.count)


def regression_model(pm, X, y, total_size):
    """The demos' Bayesian linear regression of ``y`` on ``X`` (three
    columns) with ``total_size``; ``pm`` is the demo's PyMC module."""
    with pm.Model() as model:
        intercept = pm.Normal("intercept", 0, 10)
        coef = pm.Normal("coef", 0, 10, shape=3)
        sigma = pm.HalfNormal("sigma", 5)
        pm.Normal("obs", intercept + pm.math.dot(X, coef), sigma, observed=y,
                  total_size=total_size)
    return model


def advi_step(pm, model, seed):
    """The function ``pm.fit`` calls each iteration for ``model``: the ELBO
    gradient and the Adam update (a fresh approximation, so a fitted one is
    left alone)."""
    with model:
        advi = pm.ADVI(random_seed=seed)
    return advi.objective.step_function(obj_optimizer=pm.adam(learning_rate=0.05),
                                        score=True)


def fit(pm, model, iterations, seed, progressbar):
    """ADVI with ``pm.fit`` (Adam, learning rate 0.05) on ``model``, the
    estimates averaged over the last half of the iterations.  ``pm`` is the
    demo's PyMC module."""
    avg = IterateAverage(iterations // 2)
    with model:
        approx = pm.fit(n=iterations, method="advi", obj_optimizer=pm.adam(learning_rate=0.05),
                        random_seed=seed, progressbar=progressbar, callbacks=[avg])
    avg.apply(approx)
    return approx


def by_param(intercept, coef, sigma):
    """Posterior draws keyed by the names of ``PARAMS`` (``coef``: one
    column per coefficient)."""
    samples = {"intercept": intercept, "sigma": sigma}
    for k in range(coef.shape[1]):
        samples[f"coef[{k}]"] = coef[:, k]
    return samples


def least_squares(X, y):
    """The data's own estimates: intercept and coefficients by least
    squares on all the rows, and the residuals' standard deviation."""
    design = np.c_[np.ones(len(y)), X]
    ols = np.linalg.lstsq(design, y, rcond=None)[0]
    return [*ols, np.std(y - design @ ols)]


def show_estimates(samples, true, ols):
    print("\nEstimates (ADVI on mbcore minibatches) against the truth:")
    print(f"  {'parameter':10s} {'truth':>7s} {'estimate':>9s} {'post. sd':>9s} "
          f"{'error':>8s} {'least squares':>14s}")
    for name, t, o in zip(PARAMS, true, ols):
        s = samples[name]
        print(f"  {name:10s} {t:7.3f} {s.mean():9.4f} {s.std():9.4f} {s.mean() - t:+8.4f} "
              f"{o:14.4f}")


def plot(path, truth, ours, reference, samples, batch_size, ols, *, labels, loss, library):
    """Loss curves of both fits over the posteriors against the truth and
    least squares.  ``labels``: (ours, reference) for the legend; ``loss``:
    the loss axis' label; ``library``: the PyMC named in the title."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    true = dict(zip(PARAMS, true_values(truth)))
    fig = plt.figure(figsize=(13, 6.5))
    grid = fig.add_gridspec(2, 5)
    ax = fig.add_subplot(grid[0, :])
    for hist, label, color in [(reference.hist, labels[1], "tab:red"),
                               (ours.hist, labels[0], "tab:blue")]:
        k = 50
        smooth = np.convolve(hist, np.ones(k) / k, mode="valid")
        ax.plot(hist, color=color, alpha=0.15, lw=0.5)
        ax.plot(np.arange(k - 1, len(hist)), smooth, color=color, label=f"{label} (mean of {k})")
    ax.set(yscale="log", xlabel="iteration", ylabel=loss,
           title=f"ADVI on batches of {batch_size} rows, total_size={truth['n_rows']}")
    ax.legend()
    for i, name in enumerate(PARAMS):
        a = fig.add_subplot(grid[1, i])
        a.hist(samples[name], bins=40, color="tab:blue", alpha=0.7, density=True)
        a.axvline(true[name], color="black", lw=2, label="truth")
        a.axvline(ols[i], color="tab:gray", lw=1.5, ls="--", label="least squares")
        a.set(title=name, yticks=[])
        if i == 0:
            a.legend(fontsize=7)
    fig.suptitle(f"mbcore demo: {library} ADVI on mbcore minibatches (posteriors vs truth)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"\nPlot (loss curves, posteriors vs truth): {path}")


def show_step_times(steps, batch_size, what, rounds=9, calls=300):
    """Times one ADVI step of each model with ``interleaved_min`` (exactly
    ``calls`` calls a round) and prints them.  ``steps`` maps the labels of
    ours and of the reference, in that order, to their step functions.
    Returns ``{"ours": seconds, "reference": seconds}``."""
    print(f"\nTime of one ADVI step (batch {batch_size}: {what}), best of {rounds} rounds of "
          f"{calls} calls, the two in shuffled order each round:")
    (ours, reference), width = list(steps), max(map(len, steps)) + 2
    t = interleaved_min(steps, rounds=rounds, calls=calls)
    t = {"ours": t[ours], "reference": t[reference]}
    print(f"  {ours:{width}s} {t['ours'] * 1e6:7.1f} us")
    print(f"  {reference:{width}s} {t['reference'] * 1e6:7.1f} us   (ours is "
          f"{t['reference'] / t['ours']:.2f}x as fast)")
    return t
