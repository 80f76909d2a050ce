# cython: language_level=3
"""The process's worker pool: ``mb_pool.c`` is compiled into this module
alone, so that every batch and every wake measurement use the same workers
(``_pool.pxd``)."""

cdef extern from "mb_pool.h":
    int mb_pool_run(mb_chunk_fn fn, void *ctx, int64_t nchunks, int nthreads) noexcept nogil
    int mb_pool_size() noexcept nogil
    int64_t mb_pool_wake_ns(int tries, int gap_us) noexcept nogil


cdef int pool_run(mb_chunk_fn fn, void *ctx, int64_t nchunks, int nthreads) noexcept nogil:
    """Run fn(ctx, c) for every chunk c < nchunks on this thread and up to
    nthreads - 1 workers (mb_pool.h); returns the workers asked to join
    (0: it ran alone, the pool being busy or nthreads 1)."""
    return mb_pool_run(fn, ctx, nchunks, nthreads)


cdef int pool_size() noexcept nogil:
    """Worker threads started in this process."""
    return mb_pool_size()


cdef int64_t pool_wake_ns(int tries, int gap_us) noexcept nogil:
    """Median time (ns) for a sleeping worker to start its chunk over
    ``tries`` tries, ``gap_us`` apart; -1 when no worker could be used."""
    return mb_pool_wake_ns(tries, gap_us)
