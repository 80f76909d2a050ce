# cython: language_level=3
"""The process's worker pool (``mb_pool.h``), held by ``_pool.pyx``: the
batch runner (``_gather.pyx``) and the dispatcher (``_dispatch.pyx``) use the
same workers through these functions."""
from libc.stdint cimport int64_t

cdef extern from "mb_pool.h":
    ctypedef void (*mb_chunk_fn)(void *, int64_t) noexcept nogil
    enum: MB_POOL_MAX

cdef int pool_run(mb_chunk_fn fn, void *ctx, int64_t nchunks, int nthreads) noexcept nogil
cdef int pool_size() noexcept nogil
cdef int64_t pool_wake_ns(int tries, int gap_us) noexcept nogil
