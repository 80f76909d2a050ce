# cython: language_level=3
"""``Sampler``'s C-level fields and methods, for the test hooks
(``_hooks.pyx``) that read its plan and the dispatcher's choice for it."""
cimport numpy as cnp
from libc.stdint cimport uint64_t, int64_t

from mbcore._kernels._plan cimport mb_plan, MB_MAXDIMS


cdef class Sampler:
    cdef mb_plan plan
    cdef readonly object data
    cdef readonly object sizes
    cdef readonly object keys
    cdef readonly bint replace
    cdef readonly int epochs
    cdef readonly object shard
    cdef cnp.dtype descr
    cdef int out_nd
    cdef cnp.npy_intp out_shape[MB_MAXDIMS]
    cdef public uint64_t step
    cdef int64_t out_bytes
    cdef int64_t *scratch_buf     # index scratch reused between batches (_scratch)
    cdef int64_t scratch_cap
    cdef bint scratch_busy
    cdef bint keep_gil            # a batch too small to release the GIL for ...
    cdef int64_t gil_gen          # ... as decided under this cal_gen (0: not yet)
    cdef int64_t est_ps           # its estimated one-thread time
    cdef int64_t span             # bytes the source spans
    cdef const char *src_lo       # the source's bytes: [src_lo, src_hi)
    cdef const char *src_hi

    cdef bint _fits(self, out)
    cdef cnp.ndarray _alloc(self, out)
    cdef bint _overlaps(self, cnp.ndarray res, int64_t nbytes)
    cdef int _estimate(self) except -1
    cdef object _draw(self, uint64_t step, cnp.ndarray res)
    cdef int64_t *_scratch(self, int64_t n, int64_t *small, int *how) except NULL
    cdef void _scratch_release(self, int64_t *p, int how)
    cdef object _next(self, out)
