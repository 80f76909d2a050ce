"""The epoch permutations (mb_permute.h through mbcore._kernels._permute).

Bijection: exhaustive for every n up to 4096 and for n = 2**k - 1, 2**k,
2**k + 1 up to 2**24 (checked in C, a byte per row), by sampling with the
inverse for large n up to 2**63 - 1.  Quality: fixed keys, stated
thresholds: chi-square tests reject at p < ALPHA = 1e-4 (as in
test_statistics.py), count tests at |z| > Z = 4.5.  The "catches" tests run
the same statistics on deliberately weak networks (1, 2 or 4 rounds instead
of ROUNDS = 8; 8 instead of SMALL_ROUNDS = 16 below n = SMALL_N = 128) and
require them to fail, so that each check is known to bite.
"""
import math

import numpy as np
import pytest

from mbcore._kernels import _permute as P
from mbcore._kernels._random import philox4x64_raw
from test_statistics import chi2_sf

ALPHA = 1e-4
Z = 4.5
M64 = 2 ** 64 - 1
KEYS = [(0x1234, 0x5678), (M64, 2 ** 63 + 5), (0x9E3779B97F4A7C15, 1)]
LEVELS = ["scalar", "avx2", "avx512"]


def available_levels():
    best = P._simd("auto")
    P._simd(best)
    return LEVELS[:LEVELS.index(best) + 1]


# ------------------------------------------------------------------ construction

@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("sid, epoch", [(0, 0), (3, 7), (M64, M64)])
def test_round_keys_are_the_philox_epoch_blocks(key, sid, epoch):
    # Round r's key: word r % 4 of block (r // 4, epoch, sid, 2**64 - 1).
    want = philox4x64_raw([0, epoch, sid, M64], key, 3)
    np.testing.assert_array_equal(P.round_keys(10, key, sid, epoch, rounds=12), want)
    np.testing.assert_array_equal(P.round_keys(1000, key, sid, epoch), want[:P.ROUNDS])


def test_rounds_and_domain():
    assert (P.ROUNDS, P.SMALL_ROUNDS, P.SMALL_N) == (8, 16, 128)
    assert len(P.round_keys(127, KEYS[0])) == 16
    assert len(P.round_keys(128, KEYS[0])) == 8
    for n, want in [(1, (1, 1)), (2, (1, 2)), (10, (2, 5)), (200, (10, 20)),
                    (10 ** 6, (1000, 1000)), (2 ** 20 + 1, (993, 1056)),
                    (2 ** 32, (2 ** 16, 2 ** 16))]:
        assert P.domain(n) == want, n
    rng = np.random.default_rng(5)
    ns = [1, 2, 3, 17, 2 ** 20 + 1, 10 ** 9 + 7, 2 ** 32 - 1, 2 ** 32 + 1, 2 ** 63 - 1]
    ns += [int(x) for x in rng.integers(1, 2 ** 63, 20)] + list(range(1, 300))
    for n in ns:
        # b: of ceil(sqrt(n)) and the next min(b0 // 2, 31) values (at most
        # 2**16 for n <= 2**32), the first with the least a*b - n.
        b0 = math.isqrt(n - 1) + 1
        hi = b0 + min(b0 // 2, 31)
        if n <= 2 ** 32:
            hi = min(hi, 2 ** 16)
        waste = [(-(-n // b) * b - n, b) for b in range(b0, hi + 1)]
        b = min(waste)[1]
        assert P.domain(n) == (-(-n // b), b), n


# ------------------------------------------------------------------ bijection

@pytest.mark.parametrize("key", KEYS[:2])
def test_bijection_for_every_n_up_to_4096(key):
    assert P.failing_sizes(1, 4096, key, sid=1, epoch=2) == []


def test_bijection_for_every_small_n_on_64_bit_lanes():
    assert P.failing_sizes(1, 1500, KEYS[1], wide=True) == []


@pytest.mark.parametrize("k", range(1, 25))
def test_bijection_around_powers_of_two(k):
    # grain's 4-round Feistel misses a row at n = 2**k + 1 for even k >= 16.
    for n in (2 ** k - 1, 2 ** k, 2 ** k + 1):
        if n >= 1:
            assert P.first_collision(n, KEYS[0], sid=0, epoch=k) == -1, n


@pytest.mark.parametrize("m", [3, 100, 1000, 4095])
def test_bijection_around_squares(m):
    # Where a*b - n is largest and smallest: the cycle walks are longest.
    for n in (m * m - 1, m * m, m * m + 1, m * (m + 1), m * (m + 1) + 1):
        assert P.first_collision(n, KEYS[1], epoch=m) == -1, n


@pytest.mark.parametrize("n", [2 ** 20 + 1, 3 * 10 ** 6])
def test_bijection_on_64_bit_lanes(n):
    assert P.first_collision(n, KEYS[2], wide=True) == -1


LARGE_N = [2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 10 ** 12 + 39, 2 ** 48 + 1, 2 ** 62 + 3,
           2 ** 63 - 1] + [int(x) for x in np.random.default_rng(15).integers(2 ** 33, 2 ** 63, 4)]


@pytest.mark.parametrize("n", LARGE_N)
def test_large_n_by_sampling(n):
    rng = np.random.default_rng(n % 1000)
    x = np.unique(np.concatenate([rng.integers(0, n, 20000, dtype=np.uint64),
                                  np.arange(n - 3000, n, dtype=np.uint64)]))
    y = P.at(n, KEYS[0], x)
    assert int(y.max()) < n
    assert len(np.unique(y)) == len(x)
    # The inverse is a function, so inverse(perm(x)) == x shows perm is
    # injective on the sample.
    np.testing.assert_array_equal(P.at(n, KEYS[0], y, inverse=True), x)
    # The vector fill (any level) agrees with the one-point evaluation.
    np.testing.assert_array_equal(P.permutation(n, KEYS[0], start=n - 3000),
                                  P.at(n, KEYS[0], np.arange(n - 3000, n, dtype=np.uint64))
                                  .astype(np.int64))


@pytest.mark.parametrize("n", [1, 2, 7, 1000, 10 ** 6 + 3, 2 ** 32, 2 ** 32 + 7, 10 ** 15])
@pytest.mark.parametrize("wide", [False, True])
def test_values_do_not_depend_on_the_vector_level(n, wide):
    old = P._simd()
    count = min(n, 5000)
    try:
        got = {}
        for level in available_levels():
            P._simd(level)
            got[level] = P.permutation(n, KEYS[1], sid=2, epoch=9, start=n - count, wide=wide)
    finally:
        P._simd(old)
    want = P.at(n, KEYS[1], np.arange(n - count, n, dtype=np.uint64), sid=2, epoch=9,
                wide=wide).astype(np.int64)
    for level, values in got.items():
        np.testing.assert_array_equal(values, want, err_msg=level)


# ------------------------------------------------------------------ the epoch stream

def test_batch_rows_follow_the_epochs():
    n, b, key = 10, 4, KEYS[0]
    perms = [P.permutation(n, key, sid=1, epoch=e) for e in range(5)]
    stream = np.concatenate(perms)
    for t in range(10):
        np.testing.assert_array_equal(P.batch_rows(n, b, t, key, sid=1, mode="wrap"),
                                      stream[t * b:(t + 1) * b])
        # drop: n // b = 2 batches an epoch
        e, i = divmod(t, 2)
        np.testing.assert_array_equal(P.batch_rows(n, b, t, key, sid=1, mode="drop"),
                                      perms[e][i * b:(i + 1) * b])
        # short: 3 batches an epoch, the last holds 2 rows (then filler)
        e, i = divmod(t, 3)
        got = P.batch_rows(n, b, t, key, sid=1, mode="short")
        m = min(b, n - i * b)
        np.testing.assert_array_equal(got[:m], perms[e][i * b:i * b + m])
        assert got.min() >= 0 and got.max() < n
    # A batch larger than the axis spans several epochs.
    np.testing.assert_array_equal(P.batch_rows(n, 23, 1, key, sid=1), stream[23:46])
    # A part of a batch, as a thread's chunk draws it.
    np.testing.assert_array_equal(P.batch_rows(n, 23, 1, key, sid=1, start=5, count=9),
                                  stream[28:37])


@pytest.mark.parametrize("n, b, t", [(1000, 128, M64), (3, 2 ** 40, M64 - 5), (1, 7, 12345),
                                     (10 ** 12 + 1, 10 ** 6, 2 ** 50 + 3)])
def test_batch_rows_at_huge_steps(n, b, t):
    # Position t*b + j may pass 2**64: (epoch mod 2**64, offset) exactly.
    pos = t * b
    epoch, off = divmod(pos, n)
    count = min(b, n - off, 300)
    got = P.batch_rows(n, b, t, KEYS[2], count=count)
    want = P.permutation(n, KEYS[2], epoch=epoch % 2 ** 64, start=off, count=count)
    np.testing.assert_array_equal(got, want)


# Axes under TABLE_N rows draw from a per-thread table of the whole epoch
# (mb_perm_table_rows): the same rows as the network evaluated position by
# position, however the tables are shared, replaced and threaded.

def _direct(n, b, t, key, sid=0, mode="wrap"):
    """batch_rows(n, b, t, ...) from permutation(), which never uses a table."""
    q = {"wrap": None, "drop": n // b, "short": -(-n // b)}[mode]
    if q is None:
        pos = np.arange(t * b, (t + 1) * b)
    else:
        e, i = divmod(t, q)
        pos = e * n + (i * b + np.arange(b)) % n
    epochs, offs = np.divmod(pos, n)
    perms = {e: P.permutation(n, key, sid=sid, epoch=e) for e in np.unique(epochs).tolist()}
    return np.array([perms[e][o] for e, o in zip(epochs.tolist(), offs.tolist())], np.int64)


@pytest.mark.parametrize("n", [1, 2, 5, 17, 64, 100, 127, 128, 129, 200, 255, 256, 257])
def test_table_rows_equal_the_network(n):
    # At every vector level, with a key of its own, so that each level
    # fills its own tables.
    old = P._simd()
    try:
        for li, level in enumerate(available_levels()):
            P._simd(level)
            key = (0xC0FFEE + li, n)
            for mode in ("wrap", "drop", "short"):
                for b in sorted({1, max(1, n // 3), n, 3 * n + 1}):
                    if mode != "wrap" and b > n:
                        continue
                    for t in (0, 1, 2, 7, 2 ** 40 + 1):
                        np.testing.assert_array_equal(
                            P.batch_rows(n, b, t, key, sid=2, mode=mode),
                            _direct(n, b, t, key, sid=2, mode=mode))
    finally:
        P._simd(old)


def test_whole_epochs_for_every_small_n():
    # Every n with a table, whole epochs: the tabulated network on byte
    # lanes (AVX-512) or the fill, against permutation(), which evaluates
    # each position, for three keys, four epochs and axis positions, and
    # round counts odd and even up to MAX_ROUNDS (the tables hold one per
    # round).
    for n in range(1, P.TABLE_N):
        for k, key in enumerate(KEYS):
            for epoch in (0, 5, 2 ** 33 + k, M64 - k):
                np.testing.assert_array_equal(
                    P.batch_rows(n, n, epoch, key, sid=k + 1),
                    P.permutation(n, key, sid=k + 1, epoch=epoch))
        for rounds in (1, 3, 8, 15, 32):
            np.testing.assert_array_equal(
                P.batch_rows(n, n, 7, KEYS[0], rounds=rounds),
                P.permutation(n, KEYS[0], epoch=7, rounds=rounds))


def test_tables_of_more_streams_than_slots():
    # Twice as many (key, axis) streams as a thread keeps tables, drawn in
    # turn and backwards: every table is replaced before it comes back.
    streams = [(KEYS[k % 3], sid, n) for k, (sid, n) in
               enumerate([(s, n) for s in range(2) for n in (10, 11, 100, 250)])]
    assert len(streams) >= 2 * P.TABLE_SLOTS
    for t in list(range(6)) + list(range(5, -1, -1)):
        for key, sid, n in streams:
            np.testing.assert_array_equal(P.batch_rows(n, 7, t, key, sid=sid),
                                          _direct(n, 7, t, key, sid=sid))


def test_tables_per_thread():
    import threading
    cases = [(n, b, key) for n in (3, 50, 100, 127) for b in (4, 64, 200) for key in KEYS]
    want = {c: [_direct(c[0], c[1], t, c[2]) for t in range(40)] for c in cases}
    bad = []

    def work(seed):
        order = np.random.default_rng(seed).permutation(len(cases) * 40)
        for k in order.tolist():
            c, t = cases[k // 40], k % 40
            if not np.array_equal(P.batch_rows(c[0], c[1], t, c[2]), want[c][t]):
                bad.append((c, t))

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not bad


# ------------------------------------------------------------------ quality

def cobatch_z(n, d, b, key, rounds=0, epoch=0):
    """z-score of how often rows i and i + d share a batch of b positions,
    against a uniformly random permutation (expected (n-d)(b-1)/(n-1)
    pairs, binomial spread)."""
    perm = P.permutation(n, key, epoch=epoch, rounds=rounds)
    pos = np.empty(n, np.int64)
    pos[perm] = np.arange(n)
    batch = pos // b
    obs = int(np.count_nonzero(batch[:-d] == batch[d:]))
    p = (b - 1) / (n - 1)
    exp = (n - d) * p
    return (obs - exp) / math.sqrt(exp * (1 - p))


COBATCH = [(2 ** 20, 1024, 256), (2 ** 20, 1, 256), (2 ** 20, 4096, 256),
           (2 ** 20, 2 ** 19, 256), (2 ** 20 + 1, 1024, 256), (10 ** 6, 1000, 64),
           (10 ** 6, 12345, 1024), (65537, 256, 128)]


@pytest.mark.parametrize("n, d, b", COBATCH)
def test_rows_share_batches_as_in_a_random_permutation(n, d, b):
    # grain (4 rounds): rows i and i + 1024 share a 256-row batch at 0.01x
    # the random rate at n = 2**20.
    for key in KEYS[:2]:
        z = cobatch_z(n, d, b, key, epoch=d)
        assert abs(z) < Z, (key, z)


def test_cobatch_catches_two_rounds():
    zs = [cobatch_z(2 ** 20, 1, 256, key, rounds=2) for key in KEYS[:2]]
    assert all(abs(z) > Z for z in zs), zs


def differential_pvalue(n, d, key, rounds=0, xor=False, bins=64):
    """p-value of (f(i + d) - f(i)) mod n (or f(i) xor f(i xor d), n a
    power of two) being uniform over 64 bins, over all i (all pairs)."""
    f = P.permutation(n, key, rounds=rounds)
    i = np.arange(n)
    if xor:
        j = i ^ d
        keep = (j < n) & (j > i)      # each pair once
        x = f[i[keep]] ^ f[j[keep]]
    else:
        x = (f[d:] - f[:-d]) % n
    h = np.bincount(x * bins // n, minlength=bins)
    e = len(x) / bins
    return chi2_sf(float(((h - e) ** 2 / e).sum()), bins - 1)


DIFFS = [1, 2, 1000, 1024, 4096, 2 ** 19, 12345]


@pytest.mark.parametrize("d", DIFFS)
@pytest.mark.parametrize("xor", [False, True])
def test_differences_look_independent(d, xor):
    n = 2 ** 20
    for key in KEYS[:2]:
        assert differential_pvalue(n, d, key, xor=xor) > ALPHA, key


@pytest.mark.parametrize("rounds", [2, 4])
def test_differential_catches_few_rounds(rounds):
    # With 4 rounds, the (f(i + 1024) - f(i)) differences of n = 2**20 are
    # already far from uniform; the network runs ROUNDS = 8.
    ps = [differential_pvalue(2 ** 20, 1024, key, rounds=rounds) for key in KEYS[:2]]
    assert all(p < ALPHA for p in ps), ps


def position_pvalue(n, nepochs, rounds=0, key=KEYS[0], bins=None):
    """p-value of every row being at every position with frequency 1/n over
    ``nepochs`` epochs (rows and positions grouped into ``bins`` bins when
    given): chi-square with (n-1)**2 (or (bins-1)**2) degrees of freedom."""
    c = P.position_counts(n, key, sid=4, epoch=100, nepochs=nepochs, rounds=rounds)
    if bins:
        g = np.arange(n) * bins // n
        c = np.add.reduceat(np.add.reduceat(c, np.flatnonzero(np.diff(g, prepend=-1)), 0),
                            np.flatnonzero(np.diff(g, prepend=-1)), 1)
    rows = c.sum(1, keepdims=True)
    cols = c.sum(0, keepdims=True)
    exp = rows * cols / c.sum()
    k = c.shape[0]
    return chi2_sf(float(((c - exp) ** 2 / exp).sum()), (k - 1) ** 2)


@pytest.mark.parametrize("n, nepochs, bins", [(2, 20000, None), (3, 30000, None),
                                              (5, 50000, None), (13, 100000, None),
                                              (37, 50000, None), (255, 20000, 15),
                                              (256, 20000, 16), (1000, 4000, 20),
                                              (4096, 1000, 16)])
def test_each_row_at_each_position_with_frequency_1_over_n(n, nepochs, bins):
    assert position_pvalue(n, nepochs, bins=bins) > ALPHA


def test_position_uniformity_catches_one_round():
    # One round changes only the high digit: a row keeps its low digit.
    assert position_pvalue(37, 20000, rounds=1) < ALPHA


def test_small_n_needs_its_16_rounds():
    # n = 5 (digits of 2 and 3 values): 8 rounds leave a bias that 4e5
    # epochs show; the 16 rounds used below n = 128 do not.
    assert position_pvalue(5, 400000, rounds=8) < ALPHA
    assert position_pvalue(5, 400000) > ALPHA


def test_consecutive_epochs_are_uncorrelated():
    # Position of each row in epoch e against in epoch e + 1: the mean of
    # the Pearson correlations over 400 pairs of epochs, each with spread
    # 1 / sqrt(n - 1) for independent permutations, and the 10 x 10 table
    # of (decile in e, decile in e + 1) counts.
    n, pairs = 1000, 400
    rs, table = [], np.zeros((10, 10))
    for e in range(pairs):
        p0 = P.permutation(n, KEYS[1], sid=0, epoch=e)
        p1 = P.permutation(n, KEYS[1], sid=0, epoch=e + 1)
        q0 = np.empty(n, np.int64)
        q1 = np.empty(n, np.int64)
        q0[p0] = np.arange(n)
        q1[p1] = np.arange(n)
        rs.append(np.corrcoef(q0, q1)[0, 1])
        np.add.at(table, (q0 * 10 // n, q1 * 10 // n), 1)
    z = np.mean(rs) * math.sqrt(pairs * (n - 1))
    assert abs(z) < Z, z
    exp = pairs * n / 100
    assert chi2_sf(float(((table - exp) ** 2 / exp).sum()), 81) > ALPHA
    # Same epoch: the statistic sees it (r = 1).
    assert np.corrcoef(q0, q0)[0, 1] == 1


def test_axes_and_seeds_get_unrelated_permutations():
    n = 10 ** 5
    base = P.permutation(n, KEYS[0], sid=0, epoch=3)
    for other in (P.permutation(n, KEYS[0], sid=1, epoch=3),
                  P.permutation(n, KEYS[2], sid=0, epoch=3),
                  P.permutation(n, KEYS[0], sid=0, epoch=4)):
        assert abs(np.corrcoef(base, other)[0, 1]) * math.sqrt(n - 1) < Z
        # Agreements: Poisson(1) for independent permutations.
        assert np.count_nonzero(base == other) < 10


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"n must be in \[1, 2\*\*63 - 1\], got 0"):
        P.permutation(0, KEYS[0])
    with pytest.raises(ValueError, match=r"n must be in .* got 9223372036854775808"):
        P.permutation(2 ** 63, KEYS[0])
    with pytest.raises(ValueError, match=r"rounds must be in \[0, 32\] \(0: the default\), got 33"):
        P.permutation(10, KEYS[0], rounds=33)
    with pytest.raises(ValueError, match="start=8, count=5"):
        P.permutation(10, KEYS[0], start=8, count=5)
    with pytest.raises(ValueError, match="positions must be < n = 10, got 10"):
        P.at(10, KEYS[0], [3, 10])
    with pytest.raises(ValueError, match="mode must be one of"):
        P.batch_rows(10, 3, 0, KEYS[0], mode="loop")
