"""Distribution checks that can fail: fixed seeds, stated thresholds.

Every chi-square test below rejects when its p-value is below ALPHA = 1e-4.
The seeds are fixed, so each test is deterministic; the threshold says how
surprising a sample must be to count as a failure, and the "power" tests show
the same checks rejecting samplers with known biases (PyMC3's float
truncation, a plain modulo reduction).
"""
import itertools
import math

import numpy as np
import pytest

from mbcore import Minibatch
from mbcore._kernels._random import draw_indices

ALPHA = 1e-4     # reject uniformity when p < ALPHA


# ------------------------------------------------------------------ helpers

def chi2_sf(x, dof):
    """P(chi2(dof) >= x): the regularized upper incomplete gamma Q(dof/2, x/2)
    (series / continued fraction, Numerical Recipes 6.2)."""
    a, x = dof / 2.0, x / 2.0
    if x <= 0:
        return 1.0
    log_front = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:                                   # series for P, Q = 1 - P
        term = total = 1.0 / a
        ap = a
        for _ in range(100000):
            ap += 1
            term *= x / ap
            total += term
            if term < total * 1e-16:
                break
        return max(0.0, 1.0 - total * math.exp(log_front))
    tiny = 1e-300                                   # Lentz continued fraction for Q
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 100000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-16:
            break
    return math.exp(log_front) * h


def chi2_pvalue(observed, expected_prob):
    """Pearson chi-square goodness of fit of counts to cell probabilities."""
    observed = np.asarray(observed, dtype=np.float64)
    expected = observed.sum() * np.asarray(expected_prob, dtype=np.float64)
    assert expected.min() >= 5, "too few expected counts per cell for chi-square"
    stat = float(((observed - expected) ** 2 / expected).sum())
    return chi2_sf(stat, len(observed) - 1)


def binned_probabilities(n, bins):
    """Exact P(floor(i * bins / n) == b) for i uniform on [0, n)."""
    edges = [-(-(b * n) // bins) for b in range(bins + 1)]      # ceil(b * n / bins)
    return np.array([(edges[b + 1] - edges[b]) / n for b in range(bins)])


def binned_pvalue(indices, n, bins):
    indices = np.asarray(indices, dtype=np.int64)
    assert indices.min() >= 0 and indices.max() < n
    if n * bins < 2 ** 63:
        b = indices * bins // n
    else:                          # exact, in Python ints
        b = (indices.astype(object) * bins // n).astype(np.int64)
    counts = np.bincount(b, minlength=bins)
    return chi2_pvalue(counts, binned_probabilities(n, bins))


def binomial_z(successes, trials, p):
    """Normal approximation z-score of a binomial count."""
    return (successes - trials * p) / math.sqrt(trials * p * (1 - p))


# |z| > 4.5 has two-sided p < 1e-5 (below ALPHA).
Z_MAX = 4.5


def minibatch_indices(n, m, seed, replace=True):
    """Indices of the first batch of a Minibatch over n rows, through the real
    draw-and-gather path: the data is arange(n), so the batch *is* its indices
    (for n that fit in memory), else a zero-stride view and last_indices."""
    if n <= 2 ** 24:
        data = np.arange(n, dtype=np.int64)
        mb = Minibatch(data, m, random_seed=seed, replace=replace)
        batch = next(mb)
        np.testing.assert_array_equal(batch, mb.last_indices[0])
        return batch
    data = np.broadcast_to(np.zeros(1, np.uint8), (n,))
    mb = Minibatch(data, m, random_seed=seed, replace=replace)
    next(mb)
    return mb.last_indices[0]


# ------------------------------------------------------------------ the helpers themselves

def test_chi2_sf_closed_forms():
    for x in (0.01, 0.5, 1.0, 3.0, 10.0, 40.0):
        assert math.isclose(chi2_sf(x, 2), math.exp(-x / 2), rel_tol=1e-10)
        assert math.isclose(chi2_sf(x, 1), math.erfc(math.sqrt(x / 2)), rel_tol=1e-8)
    # chi2(4): Q = exp(-x/2) (1 + x/2)
    for x in (0.3, 5.0, 30.0):
        assert math.isclose(chi2_sf(x, 4), math.exp(-x / 2) * (1 + x / 2), rel_tol=1e-10)
    # reference values from scipy.stats.chi2.sf (scipy 1.17.1)
    for x, dof, sf in [(1100, 999, 0.013818467525532353), (950, 999, 0.8642681822863968),
                       (3, 5, 0.6999858358786276), (100, 63, 0.002077236552784822),
                       (1e4, 9000, 3.031801838549065e-13)]:
        assert math.isclose(chi2_sf(x, dof), sf, rel_tol=1e-9)


def test_binned_probabilities_sum_to_one():
    for n, bins in [(10, 3), (2 ** 31 + 11, 64), (2 ** 33 + 5, 64), (10 ** 6 + 3, 1000)]:
        p = binned_probabilities(n, bins)
        assert math.isclose(p.sum(), 1.0, rel_tol=1e-12)


# ------------------------------------------------------------------ replace=True

@pytest.mark.parametrize("n, m", [(3, 30000), (7, 70000), (1000, 200000)])
def test_uniform_small_n(n, m):
    idx = minibatch_indices(n, m, seed=101)
    counts = np.bincount(idx, minlength=n)
    assert chi2_pvalue(counts, np.full(n, 1 / n)) > ALPHA


def test_uniform_across_steps_and_seeds():
    # Many small batches (the usual use), n = 7: 20000 batches of 5.
    mb = Minibatch(np.arange(7), 5, random_seed=2024)
    counts = np.zeros(7, np.int64)
    for _ in range(20000):
        counts += np.bincount(next(mb), minlength=7)
    assert chi2_pvalue(counts, np.full(7, 1 / 7)) > ALPHA


def test_uniform_n_just_over_a_million():
    n = 10 ** 6 + 3
    idx = minibatch_indices(n, 2 * 10 ** 6, seed=7)
    assert binned_pvalue(idx, n, 1000) > ALPHA


def _low_bits_pvalue(idx, bits):
    k = 2 ** bits
    return chi2_pvalue(np.bincount(idx % k, minlength=k), np.full(k, 1 / k))


@pytest.mark.parametrize("n", [2 ** 31 + 11, 3 * 2 ** 30 + 7])
def test_uniform_n_over_2_31_binned(n):
    idx = draw_indices((11, 22), 0, 0, n, 2 * 10 ** 6)
    assert binned_pvalue(idx, n, 64) > ALPHA
    # High indices are hit: P(max < n - g) = (1 - g/n)**m ~ exp(-244) for g = n / 2**13.
    assert idx.max() >= n - n // 2 ** 13
    # and low bits are uniform (a float sampler of this range keeps them, a
    # coarse one would not): idx % 256 over 2e6 draws.
    assert _low_bits_pvalue(idx, 8) > ALPHA


def test_uniform_n_over_2_32_through_zero_stride_view():
    n = 2 ** 33 + 5
    data = np.broadcast_to(np.zeros(1), (n,))
    mb = Minibatch(data, 500000, random_seed=99)
    idx = []
    for _ in range(2):
        batch = next(mb)
        assert batch.shape == (500000,) and (batch == 0).all()
        idx.append(mb.last_indices[0])
    idx = np.concatenate(idx)
    assert binned_pvalue(idx, n, 64) > ALPHA
    # 3/4 of the range lies above 2**32 - 1: the 64-bit path is really used.
    above = int((idx > 2 ** 32 - 1).sum())
    p_above = (n - 2 ** 32) / n
    assert abs(binomial_z(above, len(idx), p_above)) < Z_MAX
    assert idx.max() >= n - n // 2 ** 12


def test_uniform_low_bits_for_n_near_2_62():
    # PyMC3's float64 uniform truncated to an index cannot produce the low
    # 9 bits of indices near 2**62 (float64 spacing there is 2**10).
    n = 2 ** 62 + 12345
    idx = draw_indices((5, 6), 0, 0, n, 300000)
    assert _low_bits_pvalue(idx, 9) > ALPHA
    assert binned_pvalue(idx, n, 64) > ALPHA


def test_last_index_rate_n3():
    # Index n-1 must come up at rate 1/n (PyMC3's high = n - 1e-10 in float
    # arithmetic can round it away or out of range).
    idx = minibatch_indices(3, 300000, seed=5)
    assert abs(binomial_z(int((idx == 2).sum()), len(idx), 1 / 3)) < Z_MAX


def _odd_share_above_2_24(idx):
    top = idx[idx >= 2 ** 24]
    return int((top % 2).sum()), len(top)


def test_rows_unreachable_in_float32_are_reached():
    # float32 has no odd integers above 2**24: a float32 uniform truncated to
    # an index (PyMC3 with floatX=float32) never picks an odd row above 2**24.
    n = 2 ** 24 + 2 ** 23
    idx = draw_indices((3, 3), 0, 0, n, 400000)
    odd, total = _odd_share_above_2_24(idx)
    assert total > 100000
    assert abs(binomial_z(odd, total, 0.5)) < Z_MAX


def test_joint_uniformity_of_pairs():
    # Consecutive draws in a batch, the same position in consecutive steps,
    # and the two axes of one batch: each pair uniform on 7 x 7 cells.
    n = 7
    mb = Minibatch(np.zeros((n, n), np.uint8), [50, 50], random_seed=31)
    within = np.zeros(n * n, np.int64)
    across_axes = np.zeros(n * n, np.int64)
    across_steps = np.zeros(n * n, np.int64)
    prev = None
    for t in range(400):
        i0, i1 = mb.indices(t)
        within += np.bincount(i0[:-1] * n + i0[1:], minlength=n * n)
        across_axes += np.bincount(i0 * n + i1, minlength=n * n)
        if prev is not None:
            across_steps += np.bincount(prev * n + i0, minlength=n * n)
        prev = i0
    for counts in (within, across_axes, across_steps):
        assert chi2_pvalue(counts, np.full(n * n, 1 / n ** 2)) > ALPHA


# ------------------------------------------------------------------ replace=False

def test_noreplace_inclusion_frequencies_dense():
    # n = 10, m = 4 over 20000 batches.  Inclusion counts are not multinomial:
    # Cov = T p (1 - p) n/(n-1) (I - J/n) with p = m/n, so the Pearson
    # statistic times (n - 1)/(n - m) is chi2(n - 1).
    n, m, T = 10, 4, 20000
    mb = Minibatch(np.arange(n), m, replace=False, random_seed=77)
    counts = np.zeros(n, np.int64)
    first = np.zeros(n, np.int64)
    last = np.zeros(n, np.int64)
    for _ in range(T):
        b = next(mb)
        assert len(np.unique(b)) == m
        counts += np.bincount(b, minlength=n)
        first[b[0]] += 1
        last[b[-1]] += 1
    expected = T * m / n
    stat = float(((counts - expected) ** 2 / expected).sum()) * (n - 1) / (n - m)
    assert chi2_sf(stat, n - 1) > ALPHA
    # every position is marginally uniform
    assert chi2_pvalue(first, np.full(n, 1 / n)) > ALPHA
    assert chi2_pvalue(last, np.full(n, 1 / n)) > ALPHA


def test_noreplace_inclusion_frequencies_sparse():
    # n = 10**6, m = 50: the hash-table path.  100 bins of 10**4 indices;
    # the within-batch correlation changes the statistic by (n-1)/(n-m) ~ 1.
    n, m = 10 ** 6, 50
    idx = np.concatenate([draw_indices((8, 9), 0, t, n, m, False) for t in range(4000)])
    batches = idx.reshape(4000, m)
    assert all(len(np.unique(b)) == m for b in batches)
    assert binned_pvalue(idx, n, 100) > ALPHA


def test_noreplace_all_ordered_pairs_equally_likely():
    # n = 4, m = 2: 12 ordered pairs, each 1/12.
    n, m, T = 4, 2, 24000
    mb = Minibatch(np.arange(n), m, replace=False, random_seed=3)
    pairs = list(itertools.permutations(range(n), m))
    counts = dict.fromkeys(pairs, 0)
    for _ in range(T):
        counts[tuple(next(mb).tolist())] += 1
    assert len(counts) == 12                   # nothing outside the 12 pairs
    assert chi2_pvalue(list(counts.values()), np.full(12, 1 / 12)) > ALPHA


def test_noreplace_all_ordered_triples_equally_likely():
    # n = 5, m = 3: 60 ordered triples, each 1/60.
    n, m, T = 5, 3, 30000
    counts = dict.fromkeys(itertools.permutations(range(n), m), 0)
    for t in range(T):
        counts[tuple(draw_indices((1, 2), 0, t, n, m, False).tolist())] += 1
    assert len(counts) == 60
    assert chi2_pvalue(list(counts.values()), np.full(60, 1 / 60)) > ALPHA


def test_noreplace_full_permutations_uniform():
    # m = n = 4: all 24 permutations, each 1/24.
    counts = dict.fromkeys(itertools.permutations(range(4)), 0)
    mb = Minibatch(np.arange(4), 4, replace=False, random_seed=12)
    for _ in range(24000):
        counts[tuple(next(mb).tolist())] += 1
    assert len(counts) == 24
    assert chi2_pvalue(list(counts.values()), np.full(24, 1 / 24)) > ALPHA


# ------------------------------------------------------------------ power: the checks do fail

def _pymc3_float_indices(n, m, seed, dtype):
    """PyMC3's recipe: uniform(low=0, high=n - 1e-10) in floatX, cast to int64."""
    rng = np.random.default_rng(seed)
    high = dtype(n - 1e-10)
    return np.minimum((rng.random(m, dtype=dtype) * high).astype(np.int64), n - 1)


def test_power_float32_truncation_is_caught():
    idx = _pymc3_float_indices(2 ** 24 + 2 ** 23, 400000, 1, np.float32)
    odd, total = _odd_share_above_2_24(idx)
    assert abs(binomial_z(odd, total, 0.5)) > Z_MAX


def test_power_float32_truncation_low_bits_are_caught():
    # The low-bits check of test_uniform_n_over_2_31_binned, on PyMC3's float32 recipe.
    idx = _pymc3_float_indices(2 ** 31 + 11, 200000, 4, np.float32)
    assert _low_bits_pvalue(idx, 8) < ALPHA


def test_power_float64_truncation_is_caught():
    # The low-bits check of test_uniform_low_bits_for_n_near_2_62, on PyMC3's recipe.
    idx = _pymc3_float_indices(2 ** 62 + 12345, 300000, 2, np.float64)
    assert _low_bits_pvalue(idx, 9) < ALPHA


def test_power_modulo_bias_is_caught():
    # raw32 % n for n = 3 * 2**30 + 7: indices below 2**32 - n (about 2**30,
    # a third of the range) are twice as likely.  The binned check of
    # test_uniform_n_over_2_31_binned rejects it.
    n = 3 * 2 ** 30 + 7
    raw = np.random.default_rng(3).integers(0, 2 ** 32, size=2 * 10 ** 6, dtype=np.uint64)
    idx = (raw % n).astype(np.int64)
    assert binned_pvalue(idx, n, 64) < ALPHA
