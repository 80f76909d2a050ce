"""The main job: fit a PyMC3 regression with ADVI on mbcore minibatches.

    python examples/pymc3_demo.py [--iterations 4000] [--batch-size 500] [--out demo-out]

(``make demo`` runs it in the PyMC3 venv; it needs theano-pymc and pymc3, and
times with ``benchmarks/timing.py``, the timer of every ratio mbcore reports.)

1. Loads the bundled dataset (20000 rows: x1, x2, x3, y) and its recorded
   truth (y = 1.5 + 2 x1 - x2 + 0.5 x3 + N(0, 0.7)).
2. Times drawing a batch: ``mbcore.Minibatch`` against ``np.take`` with
   NumPy's own random indices.
3. Fits the Bayesian regression with ``pm.fit`` (ADVI, Adam) on aligned X/y
   minibatches from ``mbcore.adapters.theano.minibatches``, with
   ``total_size``, showing the progress bar; then fits the same model on the
   reference graph of the PyMC3 doc (a float uniform truncated to an index).
4. Prints the estimated and true parameters and saves a plot (loss curves,
   posteriors against the truth).
5. Times one ADVI step (the ELBO gradient and Adam update that ``pm.fit``
   runs each iteration) of both models, in turn, in rounds of shuffled order.

The estimates are the approximation averaged over the last half of the
iterations (iterate averaging: the last iterate alone wanders by ~0.04 at
this learning rate).
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from mbcore.adapters.theano import minibatches  # first: configures theano

import pymc3 as pm  # noqa: E402
import theano  # noqa: E402
import theano.tensor as tt  # noqa: E402

import mbcore  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from timing import interleaved_min  # noqa: E402

PARAMS = ["intercept", "coef[0]", "coef[1]", "coef[2]", "sigma"]


def load():
    table = np.loadtxt(mbcore.get_data("regression.csv"), delimiter=",", skiprows=1)
    truth = json.load(mbcore.get_data("regression.json"))
    return table, truth


def show_dataset(table, truth):
    n = table.shape[0]
    print(f"Dataset: mbcore.get_data('regression.csv'), {n} rows x {table.shape[1]} columns "
          f"({', '.join(truth['columns'])})")
    print("  first rows:")
    for row in table[:3]:
        print("   " + "  ".join(f"{v:9.4f}" for v in row))
    print(f"  truth (regression.json): y = {truth['intercept']} + X @ {truth['coef']} "
          f"+ N(0, {truth['sigma']})")


def show_sampling_speed(table, batch_size):
    n = table.shape[0]
    mb = mbcore.Minibatch(table, batch_size=batch_size, random_seed=1)
    rng = np.random.default_rng(1)

    def numpy_take():
        return np.take(table, rng.integers(0, n, batch_size), axis=0)

    t = interleaved_min({"ours": mb.__next__, "numpy": numpy_take})
    ours, numpy = t["ours"], t["numpy"]
    print(f"\nSampling a batch of {batch_size} rows of {n} x {table.shape[1]} float64:")
    print(f"  mbcore.Minibatch    {ours * 1e6:7.2f} us")
    print(f"  np.take(rng.integers) {numpy * 1e6:5.2f} us   ({numpy / ours:.1f}x slower)")


class _Recorder:
    """pm.fit callback: the mean of the approximation's parameters over the
    iterations from ``start`` on."""

    def __init__(self, start):
        self.start = start
        self.sums = None
        self.count = 0

    def __call__(self, approx, losses, i):
        if i >= self.start:
            values = [p.get_value() for p in approx.params]
            self.sums = values if self.sums is None else [s + v for s, v in
                                                          zip(self.sums, values)]
            self.count += 1

    def apply_mean(self, approx):
        for p, s in zip(approx.params, self.sums):
            p.set_value(s / self.count)


def build_model(X, y, total_size):
    with pm.Model() as model:
        intercept = pm.Normal("intercept", 0, 10)
        coef = pm.Normal("coef", 0, 10, shape=3)
        sigma = pm.HalfNormal("sigma", 5)
        pm.Normal("obs", intercept + tt.dot(X, coef), sigma, observed=y,
                  total_size=total_size)
    return model


def advi_step(model, seed):
    """The function ``pm.fit`` calls each iteration for ``model``: the ELBO
    gradient and the Adam update (a fresh approximation, so the fitted one
    is left alone)."""
    with model:
        advi = pm.ADVI(random_seed=seed)
    return advi.objective.step_function(obj_optimizer=pm.adam(learning_rate=0.05),
                                        score=True)


def fit(model, iterations, seed, progressbar):
    rec = _Recorder(iterations // 2)
    with model:
        approx = pm.fit(n=iterations, method="advi",
                        obj_optimizer=pm.adam(learning_rate=0.05), random_seed=seed,
                        progressbar=progressbar, callbacks=[rec])
    rec.apply_mean(approx)
    return approx


def summarize(approx, draws=4000):
    trace = approx.sample(draws)
    samples = {"intercept": trace["intercept"], "sigma": trace["sigma"]}
    for k in range(3):
        samples[f"coef[{k}]"] = trace["coef"][:, k]
    return samples


def plot(path, truth, ours, reference, samples, batch_size, ols):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    true = dict(zip(PARAMS, [truth["intercept"], *truth["coef"], truth["sigma"]]))
    fig = plt.figure(figsize=(13, 6.5))
    grid = fig.add_gridspec(2, 5)
    ax = fig.add_subplot(grid[0, :])
    for hist, label, color in [(reference.hist, "reference graph (doc)", "tab:red"),
                               (ours.hist, "mbcore minibatches", "tab:blue")]:
        k = 50
        smooth = np.convolve(hist, np.ones(k) / k, mode="valid")
        ax.plot(hist, color=color, alpha=0.15, lw=0.5)
        ax.plot(np.arange(k - 1, len(hist)), smooth, color=color, label=f"{label} (mean of {k})")
    ax.set(yscale="log", xlabel="iteration", ylabel="loss (-ELBO, PyMC3's scale)",
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
    fig.suptitle("mbcore demo: PyMC3 ADVI on mbcore minibatches (posteriors vs truth)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=4000)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="demo-out")
    ap.add_argument("--no-progressbar", action="store_true")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()

    table, truth = load()
    n = table.shape[0]
    X, y = np.ascontiguousarray(table[:, :3]), np.ascontiguousarray(table[:, 3])
    show_dataset(table, truth)
    show_sampling_speed(table, args.batch_size)

    print(f"\nADVI with pm.fit: {args.iterations} Adam steps (learning rate 0.05) on "
          f"aligned X/y minibatches of {args.batch_size} rows, total_size={n}")
    print("  (the first run in a fresh ~/.theano compiles Theano's C code: ~1 minute)")
    xb, yb = minibatches(X, y, batch_size=args.batch_size, random_seed=args.seed)
    t0 = time.perf_counter()
    ours = fit(build_model(xb, yb, n), args.iterations, args.seed, not args.no_progressbar)
    print(f"  fitted in {time.perf_counter() - t0:.1f} s (compile included)")

    print("\nThe same model on the PyMC3 doc's reference graph "
          "(shared[tt_rng().uniform(...).astype('int64')]):")
    # With test values, as pm.Minibatch builds it: PyMC3 models need them.
    with theano.config.change_flags(compute_test_value="raise"):
        ridx = pm.tt_rng(args.seed).uniform(size=(args.batch_size,), low=0,
                                            high=n - 1e-10).astype("int64")
        xr, yr = theano.shared(X)[ridx], theano.shared(y)[ridx]
    reference = fit(build_model(xr, yr, n), args.iterations, args.seed + 1,
                    not args.no_progressbar)

    samples = summarize(ours)
    true = [truth["intercept"], *truth["coef"], truth["sigma"]]
    ols = np.linalg.lstsq(np.c_[np.ones(n), X], y, rcond=None)[0]
    ols = [*ols, np.std(y - np.c_[np.ones(n), X] @ ols)]   # the data's own estimates
    print("\nEstimates (ADVI on mbcore minibatches) against the truth:")
    print(f"  {'parameter':10s} {'truth':>7s} {'estimate':>9s} {'post. sd':>9s} "
          f"{'error':>8s} {'least squares':>14s}")
    for name, t, o in zip(PARAMS, true, ols):
        s = samples[name]
        print(f"  {name:10s} {t:7.3f} {s.mean():9.4f} {s.std():9.4f} {s.mean() - t:+8.4f} "
              f"{o:14.4f}")

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "demo.png")
    plot(path, truth, ours, reference, samples, args.batch_size, ols)
    print(f"\nPlot (loss curves, posteriors vs truth): {path}")

    print(f"\nTime of one ADVI step (batch {args.batch_size}: ELBO gradient and Adam "
          f"update, what pm.fit runs each iteration), best of 9 rounds of 300 calls, "
          f"the two in shuffled order each round:")
    t = interleaved_min({"ours": advi_step(build_model(xb, yb, n), args.seed),
                         "reference": advi_step(build_model(xr, yr, n), args.seed)},
                        rounds=9, calls=300)
    print(f"  mbcore minibatches   {t['ours'] * 1e6:7.1f} us")
    print(f"  reference graph      {t['reference'] * 1e6:7.1f} us   (ours is "
          f"{t['reference'] / t['ours']:.2f}x as fast)")
    print(f"Done in {time.perf_counter() - t_start:.0f} s.")


if __name__ == "__main__":
    main()
