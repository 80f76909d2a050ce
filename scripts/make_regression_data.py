"""Generate mbcore/data/regression.csv and its true parameters, regression.json.

    python scripts/make_regression_data.py

y = intercept + X @ coef + sigma * eps, X ~ N(0, 1) in 3 columns, eps ~ N(0, 1),
drawn with NumPy's PCG64 from a fixed seed, so the files are reproducible.
"""
import json
import pathlib

import numpy as np

SEED = 20261124
N_ROWS = 20_000
TRUTH = {"intercept": 1.5, "coef": [2.0, -1.0, 0.5], "sigma": 0.7}

here = pathlib.Path(__file__).resolve().parent.parent / "mbcore" / "data"


def main():
    rng = np.random.default_rng(SEED)
    X = rng.standard_normal((N_ROWS, len(TRUTH["coef"])))
    y = TRUTH["intercept"] + X @ np.array(TRUTH["coef"]) \
        + TRUTH["sigma"] * rng.standard_normal(N_ROWS)
    table = np.column_stack([X, y])
    np.savetxt(here / "regression.csv", table, delimiter=",", fmt="%.6f",
               header="x1,x2,x3,y", comments="")
    meta = dict(TRUTH, n_rows=N_ROWS, seed=SEED, columns=["x1", "x2", "x3", "y"],
                generator="scripts/make_regression_data.py")
    (here / "regression.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {N_ROWS} rows to {here / 'regression.csv'}")


if __name__ == "__main__":
    main()
