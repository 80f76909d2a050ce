"""Gross speed regressions, caught by the correctness suite on any machine.

These checks are not the speed goals (``make gates`` holds those): they fail
only when something is badly broken, such as a batch gathered by a Python
loop or NumPy fancy indexing instead of the fused kernel, or a dispatch rule
that makes a case far slower than NumPy.  Their floors hold on a loaded
2-core machine of either vendor: the goals they sit under are 8x NumPy at
batch 128 and 1.5x NumPy elsewhere, and on a 2-vCPU Intel Xeon VM where
several goals were missed, the worst case still measured 0.61x NumPy and
batch 128 at rows of 10 values 2.4x.

Each ratio is NumPy's time over ours for the same batch, measured
interleaved (``benchmarks/timing.py, interleaved_min``), the best of up to
``ATTEMPTS`` measurements, so a burst of load on a shared machine does not
fail a check by chance.
"""
import time

import numpy as np
import pytest

from mbcore import Minibatch, minibatches
from timing import interleaved_min

ATTEMPTS = 5

# A batch of 128 rows through next(mb) against np.take with NumPy-drawn
# indices.  A gather done by NumPy fancy indexing, or a batch path with a
# Python loop over rows, measures about 1x or less.
SMALL_BATCH_FLOOR = 2.0
# Every other case: not slower than NumPy by 2x.
ANY_CASE_FLOOR = 0.5

# (rows n, row width w, batch b), float64; sources from the L2 to memory.
CASES = [
    (10**4, 1, 128),
    (10**5, 10, 1024),
    (2 * 10**4, 64, 512),
    (2 * 10**4, 64, 2048),
    (10**5, 10, 4096),
    (10**5, 100, 4096),
    (10**6, 1, 10**5),
    (10**7, 1, 10**5),
    (10**4, 1000, 256),
]


def case_id(case):
    n, w, b = case
    return f"n={n:.0e} w={w} b={b}".replace("e+0", "e")


def best_ratio(ours, numpy, floor):
    best = 0.0
    for attempt in range(ATTEMPTS):
        if attempt:
            time.sleep(0.2)
        t = interleaved_min({"ours": ours, "numpy": numpy}, rounds=5, target=0.005)
        best = max(best, t["numpy"] / t["ours"])
        if best >= floor:
            break
    return best


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_next_is_not_grossly_slower_than_numpy(case):
    n, w, b = case
    data = np.full((n,) if w == 1 else (n, w), 1.5)
    mb = Minibatch(data, batch_size=b, random_seed=0)
    rng = np.random.default_rng(1)

    def numpy_take():
        return np.take(data, rng.integers(0, n, b), axis=0)

    floor = SMALL_BATCH_FLOOR if b == 128 else ANY_CASE_FLOOR
    ratio = best_ratio(mb.__next__, numpy_take, floor)
    assert ratio >= floor, (
        f"{case_id(case)}: next(mb) at {ratio:.2f}x NumPy's take, under the {floor}x floor")


def test_aligned_batches_are_not_grossly_slower_than_numpy():
    X = np.full((10**5, 10), 1.5)
    y = np.full(10**5, 2.5)
    group = minibatches(X, y, batch_size=1024, random_seed=0)
    rng = np.random.default_rng(1)

    def numpy_take():
        idx = rng.integers(0, len(y), 1024)
        return X.take(idx, axis=0), y.take(idx)

    ratio = best_ratio(group.__next__, numpy_take, ANY_CASE_FLOOR)
    assert ratio >= ANY_CASE_FLOOR, f"minibatches(X, y) at {ratio:.2f}x NumPy's take"


def test_multi_axis_is_not_grossly_slower_than_ix():
    data = np.full((2000, 500), 1.5)
    mb = Minibatch(data, batch_size=[1024, 64], random_seed=0)
    rng = np.random.default_rng(1)

    def numpy_ix():
        return data[np.ix_(rng.integers(0, 2000, 1024), rng.integers(0, 500, 64))]

    ratio = best_ratio(mb.__next__, numpy_ix, ANY_CASE_FLOOR)
    assert ratio >= ANY_CASE_FLOOR, f"multi-axis next(mb) at {ratio:.2f}x data[np.ix_(...)]"
