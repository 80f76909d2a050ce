"""Ratio gates of the core (run by ``make test``).

Each gate measures ours and its baseline interleaved in the same test and
asserts a ratio, never an absolute time.  Goals (issues #2 and #4):

- batch 128: ours at least 8x faster than ``np.take(data, rng.integers(...))``;
- every grid case: no slower than NumPy, and either at least 1.5x faster than
  NumPy or within 1.25x of the floor (a contiguous copy of the same bytes);
- multi-axis gathers: at least 3x faster than ``data[np.ix_(...)]``.

The asserted thresholds are the goals divided by a noise margin (``MARGIN``)
so that a shared 2-core machine does not fail them by chance; the measured
ratios are printed (``-s``) and recorded in the README's table by make bench.
"""
import pytest

from cases import GRID, MULTI, case_id, grid_impls, interleaved_min, multi_id, multi_impls

MARGIN = 1.15


@pytest.mark.parametrize("case", GRID, ids=case_id)
def test_grid_gate(case):
    t = interleaved_min(grid_impls(case))
    speedup = t["numpy"] / t["ours"]
    to_floor = t["ours"] / t["floor"]
    print(f"{case_id(case)}: ours/numpy speedup {speedup:.2f}x, ours/floor {to_floor:.2f}")
    assert speedup >= 1.0 / MARGIN, f"slower than NumPy: {speedup:.2f}x ({t})"
    if case[2] == 128:
        assert speedup >= 8.0 / MARGIN, f"batch 128 speedup {speedup:.2f}x < 8x ({t})"
    assert speedup >= 1.5 / MARGIN or to_floor <= 1.25 * MARGIN, (
        f"neither 1.5x NumPy ({speedup:.2f}x) nor within 1.25x of the floor "
        f"({to_floor:.2f}x): {t}")


@pytest.mark.parametrize("shape,spec", MULTI, ids=[multi_id(*m) for m in MULTI])
def test_multi_axis_gate(shape, spec):
    t = interleaved_min(multi_impls(shape, spec))
    speedup = t["numpy"] / t["ours"]
    print(f"{multi_id(shape, spec)}: ours/numpy np.ix_ speedup {speedup:.2f}x")
    assert speedup >= 3.0 / MARGIN, f"multi-axis speedup {speedup:.2f}x < 3x ({t})"
