"""The main job on PyMC 5: fit a regression with ADVI on mbcore minibatches.

    python examples/pymc5_demo.py [--iterations 4000] [--batch-size 500] [--out demo-out]

(``make demo-pymc`` runs it in the PyMC 5 venv.  What it shares with the
PyMC3 demo, examples/pymc3_demo.py, is in examples/demo_report.py; it times
with ``benchmarks/timing.py``, the timer of every ratio mbcore reports.)

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
import os
import sys
import time
from pathlib import Path

import numpy as np
import pymc as pm

from mbcore.adapters.pytensor import Minibatch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import demo_report as report  # noqa: E402
from demo_report import PARAMS, load  # noqa: E402,F401


def build_model(X, y, total_size):
    return report.regression_model(pm, X, y, total_size)


def advi_step(model, seed):
    """The function ``pm.fit`` calls each iteration for ``model``."""
    return report.advi_step(pm, model, seed)


def summarize(approx, draws=4000, seed=0):
    post = approx.sample(draws, random_seed=seed).posterior
    return report.by_param(post["intercept"].values.ravel(),
                           post["coef"].values.reshape(-1, 3), post["sigma"].values.ravel())


def main(argv=None):
    args = report.arguments(__doc__, argv, timing_rounds=True)
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
    ours = report.fit(pm, build_model(xb, yb, n), args.iterations, args.seed,
                      not args.no_progressbar)
    print(f"  fitted in {time.perf_counter() - t0:.1f} s (compile included)")

    print("\nThe same model on pm.Minibatch:")
    xr, yr = pm.Minibatch(X, y, batch_size=args.batch_size)
    t0 = time.perf_counter()
    reference = report.fit(pm, build_model(xr, yr, n), args.iterations, args.seed + 1,
                           not args.no_progressbar)
    print(f"  fitted in {time.perf_counter() - t0:.1f} s (compile included)")

    samples = summarize(ours)
    true = report.true_values(truth)
    ols = report.least_squares(X, y)   # the data's own estimates
    report.show_estimates(samples, true, ols)

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "demo-pymc.png")
    report.plot(path, truth, ours, reference, samples, args.batch_size, ols,
                labels=("mbcore Minibatch", "pm.Minibatch"), loss="loss (-ELBO)",
                library="PyMC 5")

    t = report.show_step_times(
        {"mbcore Minibatch": advi_step(build_model(xb, yb, n), args.seed),
         "pm.Minibatch": advi_step(build_model(xr, yr, n), args.seed)},
        args.batch_size, "what pm.fit runs each iteration", rounds=args.timing_rounds)
    print(f"Done in {time.perf_counter() - t_start:.0f} s.")
    return {"samples": samples, "truth": true, "times": t, "plot": path}


if __name__ == "__main__":
    main()
