"""Speed gate of epoch mode (``make gates``): a batch drawn with
``epochs=True`` costs at most 1.5x the same batch drawn with replacement.

Both sides are ``next(mb)`` on the same data, each with its own Minibatch
and seed (so that neither finds the other's rows in the cache), measured
interleaved in shuffled rounds (``cases.best_ratio``); the gate asserts
the ratio, with ``MARGIN`` for the noise of a shared machine, and prints
it (``pytest -s``).  A second table times the index draws alone (the
kernels' ``fill_epoch`` against the with-replacement draw), including
axes over 2**32, whose permutation runs on 64-bit lanes; it is printed,
not gated: the gate is on what a user sees.
"""
import itertools

import pytest

from cases import GRID, best_ratio, case_id, make_data
from mbcore import Minibatch
from mbcore._kernels import _permute
from mbcore._kernels._random import draw_indices
from mbcore._spec import seed_key

MARGIN = 1.15
NEED = 1.5       # epoch batch time / with-replacement batch time, at most

# The core's grid, short axes (200 rows: every batch of 128 crosses an
# epoch boundary two times in three; 100 and 127 rows: 16 rounds, whole
# epochs in per-thread tables; 100 rows in batches of 128: 1.28 epochs,
# their round keys and tables, computed a batch), and one whose digits do
# not factor it exactly (walks).
CASES = GRID + [(200, 10, 128), (100, 10, 64), (127, 10, 64), (100, 10, 128),
                (10**6 + 1, 1, 4096)]


def gate_id(case):
    """case_id, with short axes' lengths written out (100 and 127 rows)."""
    n, w, b = case
    return f"n={n} w={w} b={b}" if n < 1000 else case_id(case)


def epoch_impls(case):
    n, w, b = case
    data = make_data(n, w)
    rep = Minibatch(data, b, random_seed=1)
    ep = Minibatch(data, b, random_seed=2, epochs=True)
    return {"replace": lambda: next(rep), "ours": lambda: next(ep)}


def epoch_cost(case):
    """The epoch batch's time over the with-replacement batch's, printed."""
    # best_ratio maximises t[baseline] / t["ours"]: here replace / epochs.
    ratio, t = best_ratio(epoch_impls(case), "replace", 1 / NEED)
    cost = 1 / ratio
    print(f"{gate_id(case)}: epochs {cost:.2f}x the with-replacement batch "
          f"({t['ours'] * 1e6:.2f} / {t['replace'] * 1e6:.2f} us); goal "
          f"(<= {NEED}x) {'met' if cost <= NEED else 'NOT met'}")
    return cost, t


@pytest.mark.parametrize("case", CASES, ids=gate_id)
def test_epoch_batch_gate(case):
    cost, t = epoch_cost(case)
    assert cost <= NEED * MARGIN, f"epoch batch {cost:.2f}x > {NEED}x * {MARGIN} ({t})"


INDEX_CASES = [(10**6, 4096), (2**20 + 1, 4096), (200, 128), (10**10, 4096),
               (2**62 + 3, 4096)]


@pytest.mark.parametrize("n,b", INDEX_CASES)
def test_epoch_index_draw_ratio(n, b):
    key = seed_key(3)
    # Step after step, as a loop draws them: an axis under TABLE_N rows
    # computes each epoch's table once (one fixed step would only copy it).
    steps = itertools.count()
    impls = {
        "replace": lambda: draw_indices(key, 0, 5, n, b),
        "ours": lambda: _permute.batch_rows(n, b, next(steps), key),
    }
    ratio, t = best_ratio(impls, "replace", 10.0, attempts=1)
    print(f"n={n} b={b}: epoch indices {1 / ratio:.2f}x the with-replacement draw "
          f"({t['ours'] / b * 1e9:.2f} / {t['replace'] / b * 1e9:.2f} ns an index)")
