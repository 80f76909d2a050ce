# cython: language_level=3
"""The copy loops of a gather (``_copy.pyx``): rows (or blocks) from a
source, given by indices and a byte stride, into consecutive places of the
output; with prefetching for sources beyond the caches.  The walk
(``_plan.pyx``), the calibration that times them (``_dispatch.pyx``) and
the ``copy_rows`` hook all run these same compiled loops.
"""
from libc.stdint cimport int64_t


cdef extern from "mb_copy.h":
    enum:
        MB_SHORT_MIN
        MB_SHORT_MAX
    void MB_PREFETCH(const void *p) noexcept nogil
    void mb_copy_short_rows(char *dst, const char *base, const int64_t *idx,
                            int64_t stride, int64_t m, int64_t nb,
                            int64_t ahead) noexcept nogil


cdef enum:
    MB_PREFETCH_LINES = 16  # at most this many 64-byte lines prefetched per row


cdef void copy_run(char *dst, const char *base, const int64_t *idx,
                   int64_t stride, int64_t m, int64_t block, bint moves) noexcept nogil
cdef void copy_run_prefetch(char *dst, const char *base, const int64_t *idx,
                            int64_t stride, int64_t m, int64_t block,
                            int64_t ahead, bint moves) noexcept nogil


cdef inline void prefetch_block(const char *p, int64_t block) noexcept nogil:
    cdef int64_t o = 0
    cdef int64_t end = block if block < 64 * MB_PREFETCH_LINES else 64 * MB_PREFETCH_LINES
    while o < end:
        MB_PREFETCH(p + o)
        o += 64


cdef inline bint short_rows(int64_t block) noexcept nogil:
    """Rows of this size can go through mb_copy_short_rows (``moves``)."""
    return MB_SHORT_MIN <= block <= MB_SHORT_MAX


cdef inline void copy_rows_of(char *dst, const char *base, const int64_t *idx,
                              int64_t stride, int64_t m, int64_t block,
                              int prefetch, bint moves) noexcept nogil:
    """copy_run_prefetch, ``prefetch`` rows ahead, when that is not 0 and
    rows are sampled (idx not NULL), else copy_run; sampled rows of 16 to
    272 bytes by 16-byte moves (mb_copy_short_rows) when ``moves``, else
    by libc's memcpy."""
    if prefetch > 0 and idx != NULL:
        copy_run_prefetch(dst, base, idx, stride, m, block, prefetch, moves)
    else:
        copy_run(dst, base, idx, stride, m, block, moves)
