# cython: language_level=3
"""Seeded, exactly uniform index samplers on counter-based Philox streams.

Inline and ``noexcept nogil``: cimported by ``_random.pyx`` (the Python-level
wrappers) and by ``_gather.pyx`` (the fused kernel), so each compiles them in.
Both replace=False variants run the same partial Fisher-Yates shuffle on the
same draws, so they return identical indices; only time and memory differ.
"""
from libc.stdint cimport uint32_t, uint64_t, int64_t

from _philox cimport philox_pos, pos_init, bounded_at, fill_bounded


cdef inline void sample_replace(uint64_t key0, uint64_t key1, uint64_t sid,
                         uint64_t step, int64_t n, int64_t m,
                         int64_t *out) noexcept nogil:
    """m independent uniform draws from [0, n).  O(m)."""
    cdef philox_pos st
    pos_init(&st, key0, key1, step, sid)
    fill_bounded(&st, 0, <uint64_t>n, out, m)


cdef inline void sample_noreplace_dense(uint64_t key0, uint64_t key1, uint64_t sid,
                                 uint64_t step, int64_t n, int64_t m,
                                 int64_t *out, int64_t *work) noexcept nogil:
    """Partial Fisher-Yates on a dense table of n entries.  O(n) time and memory.

    ``out`` is a uniformly random ordered sample of m distinct values.
    """
    cdef philox_pos st
    cdef int64_t i, j
    pos_init(&st, key0, key1, step, sid)
    for i in range(n):
        work[i] = i
    for i in range(m):
        j = i + <int64_t>bounded_at(&st, <uint64_t>i, <uint64_t>(n - i))
        out[i] = work[j]
        work[j] = work[i]


cdef inline int64_t _slot(const int64_t *keys, int64_t mask, int64_t x) noexcept nogil:
    cdef uint64_t h = (<uint64_t>x * 0x9E3779B97F4A7C15ULL) >> 17
    cdef int64_t s = <int64_t>(h & <uint64_t>mask)
    while keys[s] != -1 and keys[s] != x:
        s = (s + 1) & mask
    return s


cdef inline void sample_noreplace_sparse(uint64_t key0, uint64_t key1, uint64_t sid,
                                  uint64_t step, int64_t n, int64_t m,
                                  int64_t *out, int64_t *work,
                                  int64_t cap) noexcept nogil:
    """The same partial Fisher-Yates as the dense version, with the moved
    entries kept in an open-addressing hash table of ``cap`` (a power of two,
    at least 2m) slots.  O(m) time and memory; identical output.
    """
    cdef philox_pos st
    cdef int64_t i, j, si, sj, vi, vj
    cdef int64_t *keys = work
    cdef int64_t *vals = work + cap
    cdef int64_t mask = cap - 1
    pos_init(&st, key0, key1, step, sid)
    for i in range(cap):
        keys[i] = -1
    for i in range(m):
        j = i + <int64_t>bounded_at(&st, <uint64_t>i, <uint64_t>(n - i))
        sj = _slot(keys, mask, j)
        vj = vals[sj] if keys[sj] == j else j
        si = _slot(keys, mask, i)
        vi = vals[si] if keys[si] == i else i
        out[i] = vj
        keys[sj] = j
        vals[sj] = vi


cdef inline int64_t _sparse_cap(int64_t m) noexcept nogil:
    cdef int64_t cap = 16
    while cap < 2 * m:
        cap <<= 1
    return cap


cdef inline int64_t noreplace_work_size(int64_t n, int64_t m) noexcept nogil:
    """Scratch entries (int64) that sample_noreplace needs for (n, m)."""
    cdef int64_t cap = _sparse_cap(m)
    # The dense table wins when it is no larger than the hash table.
    if n <= 2 * cap:
        return n
    return 2 * cap


cdef inline void sample_noreplace(uint64_t key0, uint64_t key1, uint64_t sid,
                           uint64_t step, int64_t n, int64_t m,
                           int64_t *out, int64_t *work) noexcept nogil:
    """m distinct uniform draws from [0, n), uniformly ordered.  O(min(n, m))."""
    cdef int64_t cap = _sparse_cap(m)
    if n <= 2 * cap:
        sample_noreplace_dense(key0, key1, sid, step, n, m, out, work)
    else:
        sample_noreplace_sparse(key0, key1, sid, step, n, m, out, work, cap)


