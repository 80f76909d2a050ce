"""The main job on PyMC 5: fit a regression with ADVI on mbcore minibatches.

    python examples/pymc5_demo.py [--iterations 4000] [--batch-size 500] [--out demo-out]

(``make demo-pymc`` runs it in the PyMC 5 venv.)

1. Loads the bundled dataset (20000 rows: x1, x2, x3, y) and its recorded
   truth (y = 1.5 + 2 x1 - x2 + 0.5 x3 + N(0, 0.7)).
2. Fits the Bayesian regression with ``pm.fit`` (ADVI, Adam) on aligned X/y
   minibatches from ``mbcore.adapters.pytensor.Minibatch`` with
   ``total_size``, showing the progress bar; then the same model on
   ``pm.Minibatch``.
3. Prints the estimated and true parameters (and least squares on all the
   data) and saves a plot: loss curves, posteriors against the truth.
4. Times one ADVI step (what ``pm.fit`` runs each iteration) of both models,
   in rounds of shuffled order, minimum over rounds.

The estimates are the approximation averaged over the last half of the
iterations (iterate averaging: the last iterate alone wanders at this
learning rate).
"""
import argparse
import json
import os
import random
import time
import timeit

import numpy as np
import pymc as pm
import pytensor.tensor as pt

import mbcore
from mbcore.adapters.pytensor import Minibatch

PARAMS = ["intercept", "coef[0]", "coef[1]", "coef[2]", "sigma"]


def load():
    table = np.loadtxt(mbcore.get_data("regression.csv"), delimiter=",", skiprows=1)
    truth = json.load(mbcore.get_data("regression.json"))
    return table, truth


def build_model(xb, yb, total_size):
    with pm.Model() as model:
        intercept = pm.Normal("intercept", 0, 10)
        coef = pm.Normal("coef", 0, 10, shape=3)
        sigma = pm.HalfNormal("sigma", 5)
        pm.Normal("obs", intercept + pt.dot(xb, coef), sigma, observed=yb,
                  total_size=total_size)
    return model


class _Averager:
    """pm.fit callback: the mean of the approximation's parameters over the
    iterations from ``start`` on."""

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


def fit(model, iterations, seed, progressbar):
    avg = _Averager(iterations // 2)
    with model:
        approx = pm.fit(n=iterations, method="advi", obj_optimizer=pm.adam(learning_rate=0.05),
                        random_seed=seed, progressbar=progressbar, callbacks=[avg])
    avg.apply(approx)
    return approx


def advi_step(model, seed):
    """The function ``pm.fit`` calls each iteration for ``model``."""
    with model:
        advi = pm.ADVI(random_seed=seed)
    return advi.objective.step_function(obj_optimizer=pm.adam(learning_rate=0.05), score=True)


def interleaved_best(impls, rounds=9, calls=300):
    """Best time per call of each callable over ``rounds`` rounds of
    ``calls`` calls, the callables in an order shuffled each round."""
    best = dict.fromkeys(impls, float("inf"))
    order = list(impls)
    for fn in impls.values():
        fn()
    shuffle = random.Random(0).shuffle
    for _ in range(rounds):
        shuffle(order)
        for name in order:
            best[name] = min(best[name], timeit.Timer(impls[name]).timeit(calls) / calls)
    return best


def summarize(approx, draws=4000, seed=0):
    post = approx.sample(draws, random_seed=seed).posterior
    samples = {"intercept": post["intercept"].values.ravel(),
               "sigma": post["sigma"].values.ravel()}
    coef = post["coef"].values.reshape(-1, 3)
    for k in range(3):
        samples[f"coef[{k}]"] = coef[:, k]
    return samples


def plot(path, truth, ours, reference, samples, batch_size, ols):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    true = dict(zip(PARAMS, [truth["intercept"], *truth["coef"], truth["sigma"]]))
    fig = plt.figure(figsize=(13, 6.5))
    grid = fig.add_gridspec(2, 5)
    ax = fig.add_subplot(grid[0, :])
    for hist, label, color in [(reference.hist, "pm.Minibatch", "tab:red"),
                               (ours.hist, "mbcore Minibatch", "tab:blue")]:
        k = 50
        smooth = np.convolve(hist, np.ones(k) / k, mode="valid")
        ax.plot(hist, color=color, alpha=0.15, lw=0.5)
        ax.plot(np.arange(k - 1, len(hist)), smooth, color=color, label=f"{label} (mean of {k})")
    ax.set(yscale="log", xlabel="iteration", ylabel="loss (-ELBO)",
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
    fig.suptitle("mbcore demo: PyMC 5 ADVI on mbcore minibatches (posteriors vs truth)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=4000)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="demo-out")
    ap.add_argument("--timing-rounds", type=int, default=9)
    ap.add_argument("--no-progressbar", action="store_true")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()

    table, truth = load()
    n = table.shape[0]
    X, y = np.ascontiguousarray(table[:, :3]), np.ascontiguousarray(table[:, 3])
    print(f"Dataset: mbcore.get_data('regression.csv'), {n} rows "
          f"({', '.join(truth['columns'])}); truth: y = {truth['intercept']} + "
          f"X @ {truth['coef']} + N(0, {truth['sigma']})")

    print(f"\nADVI with pm.fit: {args.iterations} Adam steps (learning rate 0.05) on "
          f"aligned X/y minibatches of {args.batch_size} rows, total_size={n}")
    xb, yb = Minibatch(X, y, batch_size=args.batch_size, random_seed=args.seed)
    t0 = time.perf_counter()
    ours = fit(build_model(xb, yb, n), args.iterations, args.seed, not args.no_progressbar)
    print(f"  fitted in {time.perf_counter() - t0:.1f} s (compile included)")

    print("\nThe same model on pm.Minibatch:")
    xr, yr = pm.Minibatch(X, y, batch_size=args.batch_size)
    t0 = time.perf_counter()
    reference = fit(build_model(xr, yr, n), args.iterations, args.seed + 1,
                    not args.no_progressbar)
    print(f"  fitted in {time.perf_counter() - t0:.1f} s (compile included)")

    samples = summarize(ours)
    true = [truth["intercept"], *truth["coef"], truth["sigma"]]
    design = np.c_[np.ones(n), X]
    ols = np.linalg.lstsq(design, y, rcond=None)[0]
    ols = [*ols, np.std(y - design @ ols)]     # the data's own estimates
    print("\nEstimates (ADVI on mbcore minibatches) against the truth:")
    print(f"  {'parameter':10s} {'truth':>7s} {'estimate':>9s} {'post. sd':>9s} "
          f"{'error':>8s} {'least squares':>14s}")
    for name, t, o in zip(PARAMS, true, ols):
        s = samples[name]
        print(f"  {name:10s} {t:7.3f} {s.mean():9.4f} {s.std():9.4f} {s.mean() - t:+8.4f} "
              f"{o:14.4f}")

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "demo-pymc.png")
    plot(path, truth, ours, reference, samples, args.batch_size, ols)
    print(f"\nPlot (loss curves, posteriors vs truth): {path}")

    print(f"\nTime of one ADVI step (batch {args.batch_size}: what pm.fit runs each "
          f"iteration), best of {args.timing_rounds} rounds of 300 calls, the two in "
          "shuffled order each round:")
    t = interleaved_best({"ours": advi_step(build_model(xb, yb, n), args.seed),
                          "reference": advi_step(build_model(xr, yr, n), args.seed)},
                         rounds=args.timing_rounds)
    print(f"  mbcore Minibatch   {t['ours'] * 1e6:7.1f} us")
    print(f"  pm.Minibatch       {t['reference'] * 1e6:7.1f} us   (ours is "
          f"{t['reference'] / t['ours']:.2f}x as fast)")
    print(f"Done in {time.perf_counter() - t_start:.0f} s.")
    return {"samples": samples, "truth": true, "times": t, "plot": path}


if __name__ == "__main__":
    main()
