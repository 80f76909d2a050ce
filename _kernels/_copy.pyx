# cython: language_level=3
"""The copy loops of a gather (declared in ``_copy.pxd``), compiled once:
a function of their own that the walk calls once a run, rather than code
inlined into the walk's loop.  Inlined there (one module, one caller), the
walk of a (10, 20, 30, 40, 50) float64 array by [2, ..., 10] ran at half
the speed: 1.73 against 0.78 ms a batch (two processes timed in turn, best
of 15 rounds, on a loaded 2-vCPU AMD EPYC Zen 5 VM).  Rows of 16 to 272 bytes go through C
(``mb_copy.h``).
"""
from libc.stdint cimport int64_t
from libc.string cimport memcpy


cdef void copy_run(char *dst, const char *base, const int64_t *idx,
                   int64_t stride, int64_t m, int64_t block, bint moves) noexcept nogil:
    """Copy m blocks of ``block`` bytes from ``base + idx[i] * stride`` (or
    ``base + i * stride`` when idx is NULL) to consecutive places in dst.

    memcpy with a constant size compiles to one load and one store, so the
    common itemsizes get their own loops; unaligned sources stay legal.
    Sampled rows of 17 to 272 bytes go through mb_copy_short_rows when
    ``moves`` (the dispatcher measures which loop is faster, per row size,
    at first need: ``_dispatch.pyx``): a loop per count of 16-byte moves,
    rather than libc's memcpy, whose call and size dispatch can cost as
    much as copying such a row from the cache.
    Time of the loop it replaced / mb_copy_short_rows, ``next(mb)`` (a
    runtime switch in a test build), both in shuffled order in one process,
    41 rounds, two measurements each, each side with its own seed (the
    replaced loop: 16-byte moves in a loop per row up to 80 bytes, libc's
    memcpy above; b=128, sources of 8 to 27 MB unless stated):
      32 B 1.03-1.04      80 B 1.13-1.19      128 B 1.05
      256 B 1.01-1.05     272 B 1.08          80 B, 1e6 x 10, b=1024: 1.22-1.23
      80 B, 1000 x 10 (rows in the L2): 1.00
    (A first series gave both sides the same seed, so that the second to
    run found the rows the first had drawn in the cache: 80 B 1.06-1.16,
    96 B 1.21-1.25, 144 B 1.23, 272 B 1.16-1.17.)
    The replaced loop had in turn measured 1.19-1.75 (32 B), 1.09-1.22
    (64 B) and 1.02-1.13 (80 B) against libc's memcpy, and 0.85-1.02 from
    96 to 256 B, where it lost: its count of moves was a loop per row.
    """
    cdef int64_t i
    if idx != NULL:
        if block == 8:
            for i in range(m):
                memcpy(dst + 8 * i, base + idx[i] * stride, 8)
        elif block == 4:
            for i in range(m):
                memcpy(dst + 4 * i, base + idx[i] * stride, 4)
        elif block == 16:
            for i in range(m):
                memcpy(dst + 16 * i, base + idx[i] * stride, 16)
        elif block == 2:
            for i in range(m):
                memcpy(dst + 2 * i, base + idx[i] * stride, 2)
        elif block == 1:
            for i in range(m):
                dst[i] = base[idx[i] * stride]
        elif moves and MB_SHORT_MIN <= block <= MB_SHORT_MAX:
            mb_copy_short_rows(dst, base, idx, stride, m, block, 0)
        else:
            for i in range(m):
                memcpy(dst + block * i, base + idx[i] * stride, <size_t>block)
    else:
        if block == 8:
            for i in range(m):
                memcpy(dst + 8 * i, base + i * stride, 8)
        elif block == 4:
            for i in range(m):
                memcpy(dst + 4 * i, base + i * stride, 4)
        else:
            for i in range(m):
                memcpy(dst + block * i, base + i * stride, <size_t>block)


cdef void copy_run_prefetch(char *dst, const char *base, const int64_t *idx,
                            int64_t stride, int64_t m, int64_t block,
                            int64_t ahead, bint moves) noexcept nogil:
    """copy_run for sampled rows of a source larger than the caches: the row
    ``ahead`` positions ahead is prefetched before each copy, so that
    several cache misses are in flight at once."""
    cdef int64_t i, lead = m - ahead
    if moves and MB_SHORT_MIN <= block <= MB_SHORT_MAX:
        mb_copy_short_rows(dst, base, idx, stride, m, block, ahead)
        return
    for i in range(ahead if ahead < m else m):
        prefetch_block(base + idx[i] * stride, block)
    for i in range(m):
        if i < lead:
            prefetch_block(base + idx[i + ahead] * stride, block)
        if block == 8:
            memcpy(dst + 8 * i, base + idx[i] * stride, 8)
        elif block == 4:
            memcpy(dst + 4 * i, base + idx[i] * stride, 4)
        else:
            memcpy(dst + block * i, base + idx[i] * stride, <size_t>block)
