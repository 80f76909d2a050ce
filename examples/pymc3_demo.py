"""The main job: fit a PyMC3 regression with ADVI on mbcore minibatches.

    python examples/pymc3_demo.py [--iterations 4000] [--batch-size 500] [--out demo-out]

(``make demo`` runs it in the PyMC3 venv; it needs theano-pymc and pymc3, and
times with ``benchmarks/timing.py``, the timer of every ratio mbcore reports.
What it shares with the PyMC 5 demo, examples/pymc5_demo.py, is in
examples/demo_report.py.)

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
import os
import sys
import time
from pathlib import Path

import numpy as np

from mbcore.adapters.theano import minibatches  # first: configures theano

import pymc3 as pm  # noqa: E402
import theano  # noqa: E402

import mbcore  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parent))
import demo_report as report  # noqa: E402
from demo_report import PARAMS, interleaved_min, load  # noqa: E402,F401


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


def build_model(X, y, total_size):
    return report.regression_model(pm, X, y, total_size)


def advi_step(model, seed):
    """The function ``pm.fit`` calls each iteration for ``model``."""
    return report.advi_step(pm, model, seed)


def summarize(approx, draws=4000):
    trace = approx.sample(draws)
    return report.by_param(trace["intercept"], trace["coef"], trace["sigma"])


def main(argv=None):
    args = report.arguments(__doc__, argv)
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
    ours = report.fit(pm, build_model(xb, yb, n), args.iterations, args.seed,
                      not args.no_progressbar)
    print(f"  fitted in {time.perf_counter() - t0:.1f} s (compile included)")

    print("\nThe same model on the PyMC3 doc's reference graph "
          "(shared[tt_rng().uniform(...).astype('int64')]):")
    # With test values, as pm.Minibatch builds it: PyMC3 models need them.
    with theano.config.change_flags(compute_test_value="raise"):
        ridx = pm.tt_rng(args.seed).uniform(size=(args.batch_size,), low=0,
                                            high=n - 1e-10).astype("int64")
        xr, yr = theano.shared(X)[ridx], theano.shared(y)[ridx]
    reference = report.fit(pm, build_model(xr, yr, n), args.iterations, args.seed + 1,
                           not args.no_progressbar)

    samples = summarize(ours)
    ols = report.least_squares(X, y)   # the data's own estimates
    report.show_estimates(samples, report.true_values(truth), ols)

    os.makedirs(args.out, exist_ok=True)
    report.plot(os.path.join(args.out, "demo.png"), truth, ours, reference, samples,
                args.batch_size, ols,
                labels=("mbcore minibatches", "reference graph (doc)"),
                loss="loss (-ELBO, PyMC3's scale)", library="PyMC3")

    report.show_step_times(
        {"mbcore minibatches": advi_step(build_model(xb, yb, n), args.seed),
         "reference graph": advi_step(build_model(xr, yr, n), args.seed)},
        args.batch_size, "ELBO gradient and Adam update, what pm.fit runs each iteration")
    print(f"Done in {time.perf_counter() - t_start:.0f} s.")


if __name__ == "__main__":
    main()
