# cython: language_level=3
"""The epoch permutations (``_permute.pxd``, ``mb_permute.h``) for tests and
reference use: values, exhaustive bijection checks and position counts run
here in C, so that the tests cover millions of positions in well under a
second.  ``rounds`` and ``wide`` exist to test the construction itself
(fewer rounds must fail the quality tests; ``wide`` runs the 64-bit lanes
on small domains); mbcore always uses the default, ``rounds=0``: ``ROUNDS``
rounds, ``SMALL_ROUNDS`` for n < ``SMALL_N``, and 64-bit lanes only for
n > 2**32.
"""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport uint8_t, uint64_t, int64_t
from libc.stdlib cimport calloc, free

from _philox cimport simd_switch, mb_simd_set, mb_simd_detect, mb_simd_get
from _permute cimport (mb_perm, mb_perm_setup, mb_perm_fill, perm_keys, fill_epoch,
                       MB_PERM_ROUNDS, MB_PERM_SMALL_N, MB_PERM_SMALL_ROUNDS,
                       MB_PERM_MAX_ROUNDS, MB_PERM_TABLE_N, MB_PERM_TABLE_SLOTS,
                       EPOCHS_WRAP, EPOCHS_DROP, EPOCHS_SHORT)

cdef extern from "mb_permute.h":
    uint64_t mb_perm_at(const mb_perm *p, uint64_t x) noexcept nogil
    uint64_t mb_perm_inv_at(const mb_perm *p, uint64_t y) noexcept nogil

cnp.import_array()

ROUNDS = MB_PERM_ROUNDS               # rounds from n = SMALL_N up
SMALL_N = MB_PERM_SMALL_N
SMALL_ROUNDS = MB_PERM_SMALL_ROUNDS   # rounds below
TABLE_N = MB_PERM_TABLE_N             # below: whole epochs in per-thread tables ...
TABLE_SLOTS = MB_PERM_TABLE_SLOTS     # ... this many a thread
MODES = {"wrap": EPOCHS_WRAP, "drop": EPOCHS_DROP, "short": EPOCHS_SHORT}
cdef uint64_t MAX_N = 0x7FFFFFFFFFFFFFFFULL


def _simd(level=None):
    """_simd(level=None): this module's vector level (``_philox.simd_switch``)."""
    return simd_switch(level)


cdef mb_perm _setup(n, key, sid, epoch, rounds, wide) except *:
    cdef mb_perm p
    if not 1 <= n <= MAX_N:
        raise ValueError(f"n must be in [1, 2**63 - 1], got {n}")
    if not 0 <= rounds <= MB_PERM_MAX_ROUNDS:
        raise ValueError(f"rounds must be in [0, {MB_PERM_MAX_ROUNDS}] (0: the default), "
                         f"got {rounds}")
    mb_perm_setup(&p, <uint64_t>n, 0, <int>rounds, 1 if wide else 0)
    perm_keys(&p, <uint64_t>int(key[0]), <uint64_t>int(key[1]), <uint64_t>sid,
              <uint64_t>epoch)
    return p


def domain(n):
    """domain(n): (a, b), the network's two digits: L in [0, a), R in [0, b)."""
    cdef mb_perm p = _setup(n, (0, 0), 0, 0, 0, False)
    return int(p.a), int(p.b)


def round_keys(n, key, sid=0, epoch=0, rounds=0):
    """round_keys(n, key, sid=0, epoch=0, rounds=0): uint64 round keys."""
    cdef mb_perm p = _setup(n, key, sid, epoch, rounds, False)
    return np.array([p.key[r] for r in range(p.rounds)], np.uint64)


def permutation(n, key, sid=0, epoch=0, start=0, count=None, rounds=0,
                wide=False):
    """permutation(n, key, sid=0, epoch=0, start=0, count=None, rounds=0, wide=False)

    int64 array: the rows at positions ``[start, start + count)`` (default:
    to n) of epoch ``epoch`` of stream ``sid`` under the 128-bit ``key``.
    """
    cdef mb_perm p = _setup(n, key, sid, epoch, rounds, wide)
    if count is None:
        count = n - start
    if start < 0 or count < 0 or start + count > n:
        raise ValueError(f"need 0 <= start <= start + count <= n = {n}, got start={start}, "
                         f"count={count}")
    cdef cnp.ndarray out = np.empty(count, np.int64)
    cdef int64_t *o = <int64_t *>cnp.PyArray_DATA(out)
    cdef uint64_t s = start
    cdef int64_t m = count
    cdef int level = mb_simd_get()
    with nogil:
        mb_perm_fill(&p, s, o, m, level)
    return out


def at(n, key, positions, sid=0, epoch=0, rounds=0, wide=False,
       inverse=False):
    """at(n, key, positions, sid=0, epoch=0, rounds=0, wide=False, inverse=False)

    The permutation (or its inverse) at each of ``positions`` (uint64 array
    of values < n), one point at a time on the plain level: what random
    access costs, and the inverse the kernels never need.
    """
    cdef mb_perm p = _setup(n, key, sid, epoch, rounds, wide)
    cdef cnp.ndarray x = np.ascontiguousarray(positions, np.uint64)
    if x.size and int(x.max()) >= n:
        raise ValueError(f"positions must be < n = {n}, got {int(x.max())}")
    cdef cnp.ndarray out = np.empty(x.size, np.uint64)
    cdef uint64_t *xp = <uint64_t *>cnp.PyArray_DATA(x)
    cdef uint64_t *op = <uint64_t *>cnp.PyArray_DATA(out)
    cdef Py_ssize_t i, m = x.size
    cdef bint inv = inverse
    with nogil:
        for i in range(m):
            op[i] = mb_perm_inv_at(&p, xp[i]) if inv else mb_perm_at(&p, xp[i])
    return out


def batch_rows(n, b, step, key, sid=0, mode="wrap", start=0, count=None,
               rounds=0, wide=False):
    """batch_rows(n, b, step, key, sid=0, mode="wrap", start=0, count=None, ...)

    Positions ``[start, start + count)`` (default: the whole batch) of batch
    ``step`` of the epoch stream, as the kernels draw them (``fill_epoch``;
    mbcore draws a shard's part of a short batch with it).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, got {mode!r}")
    if not 1 <= n <= MAX_N or b < 1 or (mode != "wrap" and b > n):
        raise ValueError(f"bad n={n}, b={b} for mode {mode!r}")
    if count is None:
        count = b - start
    cdef cnp.ndarray out = np.empty(count, np.int64)
    cdef int64_t *o = <int64_t *>cnp.PyArray_DATA(out)
    cdef uint64_t k0 = int(key[0]), k1 = int(key[1]), s = sid, nn = n, bb = b
    cdef uint64_t t = step, st = start
    cdef int md = MODES[mode], r = rounds, w = 1 if wide else 0
    cdef int64_t m = count
    with nogil:
        fill_epoch(k0, k1, s, md, nn, 0, bb, t, st, o, m, r, w)
    return out


cdef int64_t _first_collision(mb_perm *p, uint8_t *seen, int64_t *buf, int64_t cap,
                              int level) noexcept nogil:
    """-1 when the network is a bijection of [0, n), else the first
    position whose value is out of range or repeated.  seen: n bytes of 0."""
    cdef uint64_t n = p.n, s = 0, v
    cdef int64_t c, i
    while s < n:
        c = cap if <uint64_t>cap < n - s else <int64_t>(n - s)
        mb_perm_fill(p, s, buf, c, level)
        for i in range(c):
            v = <uint64_t>buf[i]
            if v >= n or seen[v]:
                return <int64_t>(s + <uint64_t>i)
            seen[v] = 1
        s += <uint64_t>c
    return -1


def first_collision(n, key, sid=0, epoch=0, rounds=0, wide=False):
    """first_collision(n, key, ...): -1 when epoch ``epoch`` is a bijection
    of [0, n) (checked exhaustively: every position, a byte per row), else
    the first position whose row is out of range or repeated."""
    cdef mb_perm p = _setup(n, key, sid, epoch, rounds, wide)
    cdef uint8_t *seen = <uint8_t *>calloc(<size_t>n, 1)
    cdef int64_t buf[4096]
    cdef int64_t res
    cdef int level = mb_simd_get()
    if seen == NULL:
        raise MemoryError(f"cannot allocate {n} bytes")
    with nogil:
        res = _first_collision(&p, seen, buf, 4096, level)
    free(seen)
    return res


def failing_sizes(n_lo, n_hi, key, sid=0, epoch=0, rounds=0, wide=False):
    """failing_sizes(n_lo, n_hi, key, ...): the n in [n_lo, n_hi] for which
    the permutation is not a bijection of [0, n) (exhaustive for each)."""
    bad = []
    cdef mb_perm p
    cdef uint8_t *seen = <uint8_t *>calloc(<size_t>n_hi + 1, 1)
    cdef int64_t buf[4096]
    cdef int level = mb_simd_get()
    cdef uint64_t k0 = int(key[0]), k1 = int(key[1]), s = sid, e = epoch, n
    cdef int r = rounds, w = 1 if wide else 0
    cdef int64_t res
    if seen == NULL:
        raise MemoryError(f"cannot allocate {n_hi} bytes")
    try:
        for n in range(<uint64_t>n_lo, <uint64_t>n_hi + 1):
            with nogil:
                mb_perm_setup(&p, n, 0, r, w)
                perm_keys(&p, k0, k1, s, e)
                for i in range(n):
                    seen[i] = 0
                res = _first_collision(&p, seen, buf, 4096, level)
            if res >= 0:
                bad.append(int(n))
    finally:
        free(seen)
    return bad


def position_counts(n, key, sid=0, epoch=0, nepochs=1, rounds=0, wide=False):
    """position_counts(n, key, sid=0, epoch=0, nepochs=1, ...)

    int64 array c of shape (n, n): c[row, pos] is how many of the epochs
    ``epoch .. epoch + nepochs - 1`` put ``row`` at position ``pos``.
    """
    if not 1 <= n <= 4096:
        raise ValueError(f"n must be in [1, 4096], got {n}")
    cdef cnp.ndarray counts = np.zeros((n, n), np.int64)
    cdef int64_t *c = <int64_t *>cnp.PyArray_DATA(counts)
    cdef int64_t buf[4096]
    cdef mb_perm p
    cdef uint64_t k0 = int(key[0]), k1 = int(key[1]), s = sid, e, e0 = epoch
    cdef uint64_t ne = nepochs, nn = n
    cdef int r = rounds, w = 1 if wide else 0, level = mb_simd_get()
    cdef int64_t i
    with nogil:
        mb_perm_setup(&p, nn, 0, r, w)
        for e in range(ne):
            perm_keys(&p, k0, k1, s, e0 + e)
            mb_perm_fill(&p, 0, buf, <int64_t>nn, level)
            for i in range(<int64_t>nn):
                c[buf[i] * <int64_t>nn + i] += 1
    return counts
