# cython: language_level=3
"""Fused draw-and-gather kernels, the ``Sampler`` that owns a plan, and
``BatchIterator``, the C-level base of ``mbcore.Minibatch``.

Two tiers, as numpy/random does: ``cdef ... noexcept nogil`` workers on raw
pointers, byte strides and itemsize (one gather serves every dtype and
layout), and ``Sampler``, a thin wrapper that checks its input once, builds the
plan, and per batch allocates the output and enters exactly one ``nogil``
block.
"""
import numpy as np
cimport cython
cimport numpy as cnp
from cpython.ref cimport Py_INCREF
from cpython.mem cimport PyMem_RawMalloc, PyMem_RawFree
from cpython.pyport cimport PY_SSIZE_T_MAX
from libc.string cimport memcpy
from libc.stdint cimport uint32_t, uint64_t, int64_t

from _philox cimport (philox_pos, pos_init, fill_bounded, MB_PREFETCH, simd_switch,
                     mb_simd_set, mb_simd_get, mb_simd_detect)
from _samplers cimport sample_replace, sample_noreplace, noreplace_work_size

cnp.import_array()
mb_simd_set(mb_simd_detect())   # the widest vector level for drawing (_philox.pxd)

cdef extern from *:
    """
    #include <pthread.h>
    #include <stdatomic.h>
    #include <stdlib.h>
    #include <sched.h>
    /* Run fn(ctx, c) for every chunk c < nchunks on the calling thread and
       one new helper thread, each claiming the next chunk from a counter:
       the caller starts at once, and the helper, which starts tens of
       microseconds later (the wake-up of the idle second vCPU), takes what
       is left.  The caller returns when every chunk is done; a helper that
       starts after that finds no chunk and touches only this block, which
       the last of the two frees.  A thread per call, not a pool: no
       spinning workers to fight the caller for the two cores (OpenMP's
       default active wait made each call up to 50x slower on a loaded
       2-core machine).  Serial if no thread can start.

       It replaced two equal halves, one per thread, whose time was the
       helper's start-up plus half the work.  Time with halves / chunks
       (next(mb), shuffled in one process, three measurements, the other
       side's own seed): 2e6 x 64, b=2048: 137-175 / 111-123 us; 1e5 x 100,
       b=4096: 253-264 / 209-236; 1e7 x 1, b=1e5: 467-635 / 441-528;
       1e6 x 10, b=1e4: 133-138 / 102-106; 1e6 x 1, b=1e5: 176-189 /
       133-175 (one thread: 149-153, 343-373, 816-837, 141-146, 220-315).
       Batches of fewer than 512 positions were never split while they went
       in halves; in chunks, 1e4 x 1000, b=256 (8 KB rows) took 118-136 us
       against 154-162 on one thread. */
    typedef void (*mb_chunk_fn)(void *ctx, int64_t chunk);
    typedef struct {
        atomic_llong next, done;
        atomic_int refs;
        long long nchunks;
        mb_chunk_fn fn;
        void *ctx;
    } mb_share;
    static void mb_share_work(mb_share *s) {
        for (;;) {
            long long c = atomic_fetch_add(&s->next, 1);
            if (c >= s->nchunks) return;
            s->fn(s->ctx, (int64_t)c);
            atomic_fetch_add(&s->done, 1);
        }
    }
    static void *mb_share_helper(void *p) {
        mb_share *s = (mb_share *)p;
        mb_share_work(s);
        if (atomic_fetch_sub(&s->refs, 1) == 1) free(s);
        return NULL;
    }
    static void mb_run_shared(mb_chunk_fn fn, void *ctx, int64_t nchunks) {
        pthread_t th;
        pthread_attr_t at;
        long long c;
        mb_share *s = (mb_share *)malloc(sizeof(mb_share));
        if (s == NULL) { for (c = 0; c < nchunks; c++) fn(ctx, c); return; }
        atomic_init(&s->next, 0);
        atomic_init(&s->done, 0);
        atomic_init(&s->refs, 2);
        s->nchunks = nchunks;
        s->fn = fn;
        s->ctx = ctx;
        if (pthread_attr_init(&at) != 0
                || pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED) != 0
                || pthread_create(&th, &at, mb_share_helper, s) != 0)
            atomic_store(&s->refs, 1);
        pthread_attr_destroy(&at);
        mb_share_work(s);
        while (atomic_load(&s->done) < nchunks)    /* the helper's last chunk */
            sched_yield();
        if (atomic_fetch_sub(&s->refs, 1) == 1) free(s);
    }
    """
    ctypedef void (*mb_chunk_fn)(void *, int64_t) noexcept nogil
    void mb_run_shared(mb_chunk_fn fn, void *ctx, int64_t nchunks) noexcept nogil

cdef extern from "numpy/arrayobject.h":
    # numpy's __init__.pxd leaves this out; the descr reference is stolen.
    object PyArray_Empty(int nd, cnp.npy_intp *dims, cnp.dtype descr, int fortran)


cdef enum:
    MB_MAXDIMS = 64      # NPY_MAXDIMS of NumPy 2 (NumPy 1.x has 32)
    MB_CHUNK = 256       # indices drawn ahead of the copy in the fused loop
    MB_PREFETCH_AHEAD = 8   # rows between a prefetch and the copy that uses it
    MB_PREFETCH_LINES = 16  # at most this many 64-byte lines prefetched per row
    MB_MAX_THREADS = 2
    MB_SMALL_SCRATCH = 512   # int64 of index scratch on the stack; more: _scratch


# Thresholds of the two-thread split (bytes; earlier sessions: single-axis
# plans now go by estimated time, see one_thread_ns below), chosen with
# interleaved measurements on the 2-core machine, ratios to NumPy (take +
# integers) with 1 / 2 threads:
#   80 KB out (1e6 x 10, b=1024): 1.44x / 0.64x   (a thread costs ~25 us)
#   234 KB out (1e6 x 1, b=3e4):  1.16x / 1.25x
#   781 KB out (1e7 x 1, b=1e5):  0.93x / 1.69x
#   3.2 MB out (1e5 x 100, b=4096): 1.45x / 1.79x
# A walk over several outer axes (multi-axis specs) copies 8-byte elements
# from rows in the cache: less work per byte, so two threads pay only from
# PARALLEL_ND_FACTOR times PARALLEL_MIN_BYTES (2 MB) of output.  Times with
# 1 / 2 threads, 2000 x 500 float64 (that session's machine: a thread cost
# 40-75 us, the wake-up of the idle second vCPU; a sleeping worker thread
# measured the same):
#   [512, 64], 256 KB:   43 / 98 us      [2048, 64], 1 MB:  169 / 185 us
#   [1024, 64], 512 KB:  86 / 121 us     [4096, 64], 2 MB:  337 / 260 us
# Prefetching the row MB_PREFETCH_AHEAD positions ahead of each copy pays for
# rows over 32 bytes from a source beyond the L2 (and for multi-axis runs of
# 32 bytes or more, see gather_nd).  Time with prefetching off / on,
# ``next(mb)`` on the same data, each with its own seed, both in shuffled
# order in one process, 41 rounds, two measurements each, b=128 / b=1024,
# rows copied by mb_copy_short_rows (whose prefetch is two to six fixed
# hints a row):
#   rows      8 MB source           64 MB                 512 MB
#   32 B      1.02 1.03 / 0.99 0.94 1.00 0.97 / 0.97 0.96 1.00 1.05 / 1.04 1.01
#   40 B      0.96 1.22 / 1.09 0.95 1.05 1.06 / 1.06 1.04 1.05 1.03 / 1.03 1.03
#   48 B      1.28 0.99 / 1.26 1.07 1.03 1.03 / 1.04 1.01 1.03 1.03 / 1.04 1.02
#   64 B      1.05 1.08 / 1.02 1.02 1.19 1.03 / 1.05 1.09 1.04 1.06 / 0.94 1.04
#   80 B      1.15 1.10 / 1.11 1.10 1.20 1.14 / 1.16 1.11 1.14 1.14 / 1.14 1.15
# (A first series, with one seed for both, so that the second to run found
# the rows in the cache, had shown larger gains: 40-96 B 1.01-2.22.)
# The line was at 64 bytes while rows were copied by a loop of 16-byte moves
# per row, whose prefetch was a loop of hints per row too; then, time with
# prefetching off / on, Sampler.next(out=), b=128 and 1024:
#   rows      8 MB source   64 MB       512 MB
#   32 B      0.76-0.93     0.81-0.83   0.84-0.97
#   48 B      0.74-1.01     0.79-0.82   0.83-0.86
#   64 B      0.82-1.06     0.88-1.04   0.89-0.93
#   80 B      0.82-1.03     1.29-1.35   1.22-2.24   (16-48 MB: 0.93-1.48)
#   96 B      0.97-1.04     1.28-1.34   1.20-1.28
#   128 B     0.95-0.98     1.42-1.49   1.12-3.36
#   256 B     1.05-1.11     0.88-1.34   1.29-1.61
# (An order-fixed measurement, on first, off second, had put the line at 128
# bytes: the first of two callables timed in turn came out up to 30% slower.)
# Older measurements, ratios to NumPy with
# prefetching off / on, three runs of one process each, both modes measured
# interleaved in random order on the same data (measured while rows of up to
# 256 bytes were copied by a loop of 16-byte moves per row, before
# mb_copy_short_rows; see copy_run):
#   1e5 x 10, b=128 (8 MB source):     4.2, 6.6, 7.6x / 6.5, 7.0, 6.3x
#   1e5 x 100, b=4096 (80 MB):         1.27, 1.65, 1.17x / 1.64, 2.11, 1.63x
#   2e6 x 64, b=2048 (1 GB):           1.40, 0.95, 1.41x / 1.72, 1.23, 1.89x
#   1e4 x 1000, b=256 (80 MB):         1.09, 1.15, 1.09x / 1.13, 1.20, 1.12x
#   1e6 x 10, b=1024 (80 MB):          1.47, 1.39, 1.49x / 1.40, 1.77, 1.40x
#   8-byte rows (1e6 and 1e7 x 1, b=1e5): 1.5-2.3x / 1.2-2.1x, 10-20% worse:
#   their independent loads the core overlaps alone.
# Prefetching a whole chunk of 256 rows before copying them was no better
# than either (1.26-1.37x at 1e6 x 10, b=1024) and was dropped.  So was
# prefetching each row as soon as its index is drawn (draw a piece of 2-64
# indices, prefetch its rows, copy the piece before, so that the misses
# overlap the drawing; any of the four prefetch hints), against copy-time
# prefetching in the same runs (in a fixed order, copy-time first), ratios to
# NumPy: 1e5 x 10, b=128 3.9-6.5x / 6.4-7.0x, 1e6 x 10, b=1024 0.8-1.6x /
# 1.5-1.8x, 2e6 x 64, b=2048 1.33-1.55x / 1.78-1.94x; again in shuffled order
# (pieces of 8-32): 5.5-8.0x / 5.4-6.4x (noise), 1.3-1.6x / 1.7x,
# 0.96-2.0x / 1.43-2.02x.
cdef int64_t PREFETCH_MIN_SPAN = 1 << 20        # the L2
cdef int64_t PREFETCH_MIN_ROW = 33               # rows of a single-axis plan
cdef int64_t PREFETCH_MIN_BLOCK = 32             # runs of a multi-axis walk
# Rows of up to 128 bytes from a source within FAR_SPAN (in the L3) are
# prefetched further ahead: with many short misses in flight the L3 serves
# them faster (a guess; measured is only the time).  Time with 8 / 16 rows
# ahead (_tune(prefetch="on") / auto), next(mb), each with its own seed,
# shuffled in one process, 41 rounds, two to six measurements:
#   1e5 x 10 (8 MB), b=128: 1.03-1.13    1e5 x 16 (13 MB), b=128: 1.10-1.22
#   1e5 x 10, b=1024: 1.00-1.01          1e5 x 6 (48 B rows), b=128: 0.94-1.02
#   1e6 x 10 (76 MB: 8 ahead on both sides, the noise): 1.00-1.05
# (A test build, 16-32 rows against 8: 1e5 x 10 b=128 +5-20%; 1e5 x 16
# b=128 +11-13%; from 32 MB or more 1-5% slower; 800-byte rows from an 8 MB
# source 10-15% slower, hence the 128-byte limit.)
cdef int PREFETCH_AHEAD_NEAR = 16
cdef int64_t PREFETCH_NEAR_MAX_ROW = 128
cdef int forced_prefetch = -1                   # _tune: 0 / 1 for every new plan
# Two threads for one batch of a single-axis plan only when its one-thread
# time, estimated by one_thread_ns, reaches PARALLEL_MIN_NS: a thread costs
# 60-85 us here (the two-thread time less half the one-thread time, in the
# first six rows below; the wake-up of the idle second vCPU), so the batch
# must take about twice that.  The output-bytes rule it replaces (256 KB) split batches
# that take 15-90 us.  Times with 1 / 2 threads, ``next(mb)`` in shuffled
# order in one process (est: one_thread_ns):
#   2e4 x 64, b=512 (10 MB source, 256 KB out, est 16 us):   15 / 77 us
#   2e4 x 64, b=2048 (1 MB out, est 64 us):                  52 / 109 us
#   1e5 x 10, b=4096 (8 MB source, 320 KB out, est 41 us):   41 / 99 us
#   1e6 x 10, b=4096 (76 MB source, 320 KB out, est 90 us):  89 / 123 us
#   2e6 x 64, b=512 (977 MB source, 256 KB out, est 55 us):  38 / 80 us
#   1e5 x 100, b=512 (76 MB source, 400 KB out, est 83 us):  64 / 117 us
#   1e6 x 1, b=32768 (8 MB source, 256 KB out, est 210 us): 215 / 200 us
#   1e6 x 10, b=1e4 (76 MB source, 781 KB out, est 220 us): 226 / 146 us
#   2e6 x 64, b=2048 (977 MB, 1 MB out, est 222 us):        227 / 203 us
#   1e6 x 2, b=5e4 (15 MB source, 781 KB out, est 340 us):  579 / 385 us
#   1e5 x 100, b=4096 (76 MB source, 3.2 MB out, est 655 us): 499 / 370 us
#   1e7 x 1, b=1e5 (76 MB source, 781 KB out, est 640 us): 1041 / 786 us
#   1e4 x 1000, b=256 (76 MB source, 2 MB out, est 411 us): 170 / 173 us
#   1e6 x 1, b=1e5 (8 MB source, 781 KB out, est 640 us):   557 / 558 us
#     (an earlier session: 0.58-0.77x the time with two threads)
# Those were measured with the scalar draw.  Drawing with AVX-512
# (mb_philox_simd.h) took 0.53-0.64x the one-thread time at w=1 (scalar /
# AVX-512, each 1 / 2 threads, in one process, two measurements each):
#   1e6 x 1, b=32768:  173 / 161-168 us scalar,  91-94 / 121-138 us AVX-512
#   1e6 x 1, b=5e4:    167-170 / 209-248 us,     108-110 / 146-197 us
#   1e6 x 1, b=1e5:    326-331 / 328-347 us,     202-210 / 204-223 us
#   1e6 x 2, b=5e4:    241-245 / 260-271 us,     181-187 / 194-206 us
#   1e7 x 1, b=32768:  292-299 / 271-272 us,     254-259 / 231-235 us
#   1e7 x 1, b=1e5:    867-881 / 502-545 us,     760-770 / 455-527 us
# so an index is counted 4 ns with AVX-512 and 4.5 ns with AVX2 (0.72-0.80x
# the scalar time at 1e6 x 1, b=1e5), against 6 ns scalar.  (In these runs
# two threads rarely won from a source in the L3 at any level: the second
# vCPU was busier than when the table above was measured.)
# With the chunks shared instead of halves (mb_run_shared), a split forced
# on smaller batches still lost or barely won, 1 thread / split, AVX-512:
#   2e4 x 64, b=512: 7.6-9.5 / 22 us       2e4 x 64, b=2048: 38 / 42 us
#   1e5 x 10, b=4096: 17-18 / 26-27 us     1e6 x 10, b=4096: 62-67 / 54-59 us
#   1e6 x 1, b=32768: 79-88 / 107-111 us   1e5 x 100, b=512: 46 / 46-77 us
# so PARALLEL_MIN_NS stays.
cdef int64_t PARALLEL_MIN_NS = 150000
cdef int64_t PARALLEL_MIN_BYTES = 1 << 16        # and never below this output
cdef int64_t FAR_SPAN = 16 << 20                 # half the L3: rows from memory beyond
# Batches this small (a microsecond or two) are drawn with the GIL held, as
# NumPy does below 500 elements: releasing and taking it back cost more than
# another thread could win (n=1e4, b=128: 502-506 ns a batch against 536-537,
# three of four alternating runs of the two builds).
cdef int64_t KEEP_GIL_MAX_INDICES = 512
cdef int64_t KEEP_GIL_MAX_BYTES = 1 << 14
cdef int64_t PARALLEL_ND_FACTOR = 32


cdef inline int64_t one_thread_ns(int64_t nidx, int64_t nbytes, int64_t span) noexcept nogil:
    """Rough one-thread time (ns) of a single-axis batch, fitted to the
    table above: 6 ns an index (draw and copy; 4.5 with AVX2, 4 with AVX-512
    draws), and 0.05 ns a byte of output from a source within FAR_SPAN, 0.2
    ns beyond (rows from memory)."""
    cdef int level = mb_simd_get()
    cdef int64_t half_ns = 12 if level == 0 else (9 if level == 1 else 8)
    return nidx * half_ns // 2 + (nbytes // 5 if span > FAR_SPAN else nbytes // 20)


cdef inline int threads_for(const mb_plan *p, int64_t nbytes, int64_t span) noexcept nogil:
    """Threads (1 or max_threads) for a batch of plan p with nbytes of
    output (several arrays' for draw_group) from sources spanning up to span
    bytes.  Multi-axis walks: from PARALLEL_MIN_BYTES * PARALLEL_ND_FACTOR
    (2 MB) of output (measured above)."""
    if p.nouter > 1:
        return max_threads if nbytes >= PARALLEL_MIN_BYTES * PARALLEL_ND_FACTOR else 1
    if nbytes >= PARALLEL_MIN_BYTES and one_thread_ns(p.nidx, nbytes, span) >= PARALLEL_MIN_NS:
        return max_threads
    return 1


cdef inline int auto_prefetch(int64_t span, int64_t run, bint multi_axis) noexcept nogil:
    """How many rows (runs) ahead copies of runs of ``run`` bytes from a
    source spanning ``span`` bytes are prefetched, 0 for not at all (the
    rules measured above)."""
    if span <= PREFETCH_MIN_SPAN or run < (PREFETCH_MIN_BLOCK if multi_axis
                                           else PREFETCH_MIN_ROW):
        return 0
    if not multi_axis and run <= PREFETCH_NEAR_MAX_ROW and span <= FAR_SPAN:
        return PREFETCH_AHEAD_NEAR
    return MB_PREFETCH_AHEAD


cdef inline bint keeps_gil(int64_t nidx, int64_t nbytes) noexcept nogil:
    """Whether a batch of nidx indices and nbytes of output keeps the GIL."""
    return nidx <= KEEP_GIL_MAX_INDICES and nbytes <= KEEP_GIL_MAX_BYTES
cdef int max_threads = MB_MAX_THREADS


cdef struct mb_axis:
    int64_t n            # source length
    int64_t m            # output length: batch size if sampled, else n
    int64_t stride       # source byte stride (any sign, may be 0)
    uint64_t key0        # Philox key of this axis' stream
    uint64_t key1
    uint64_t sid         # stream id: the axis position
    int sampled
    int replace


cdef struct mb_plan:
    int ndim
    int nouter           # axes 0..nouter-1 are looped; the rest form one block
    int64_t block        # bytes copied per innermost step
    int64_t row_out      # output bytes per index of axis 0
    int64_t nidx         # int64 entries of sampled indices (all axes)
    int64_t nwork        # int64 entries of work space for replace=False
    int fused            # axis 0 is the only sampled axis, with replacement
    int prefetch         # rows (runs) between a prefetch and its copy; 0: none
    mb_axis ax[MB_MAXDIMS]


# ---------------------------------------------------------------- copying

cdef extern from *:
    """
    /* Copy m sampled rows of nb bytes, 16 <= nb <= MB_SHORT_MAX, from
       base + idx[i] * stride to dst: a fixed count of 16-byte moves per row,
       the last one overlapping, in one loop per count, so that no row pays
       for a call or a size dispatch.  With ahead > 0, each copy is preceded
       by a prefetch of the row `ahead` positions further: the line of every
       64th byte and of the last one (a row over a line boundary included). */
    #define MB_PREFETCH_ROW(p) do { const char *p_ = (p); int64_t o_; \
        for (o_ = 0; o_ < nb - 1; o_ += 64) MB_PREFETCH(p_ + o_); \
        MB_PREFETCH(p_ + nb - 1); } while (0)
    #define MB_MOVE(K, k) if (K > k) memcpy(d + 16 * k, s + 16 * k, 16);
    #define MB_SHORT_LOOP(K) \
        for (i = 0; i < m; i++) { \
            const char *s; char *d = dst + nb * i; \
            if (i < lead) MB_PREFETCH_ROW(base + idx[i + ahead] * stride); \
            s = base + idx[i] * stride; \
            MB_MOVE(K, 0) MB_MOVE(K, 1) MB_MOVE(K, 2) MB_MOVE(K, 3) \
            MB_MOVE(K, 4) MB_MOVE(K, 5) MB_MOVE(K, 6) MB_MOVE(K, 7) \
            MB_MOVE(K, 8) MB_MOVE(K, 9) MB_MOVE(K, 10) MB_MOVE(K, 11) \
            MB_MOVE(K, 12) MB_MOVE(K, 13) MB_MOVE(K, 14) MB_MOVE(K, 15) \
            memcpy(d + nb - 16, s + nb - 16, 16); \
        } break;
    static void mb_copy_short_rows(char *dst, const char *base, const int64_t *idx,
                                   int64_t stride, int64_t m, int64_t nb,
                                   int64_t ahead) {
        int64_t i, lead = ahead > 0 ? m - ahead : 0;
        for (i = 0; i < (ahead < m ? ahead : m); i++) MB_PREFETCH_ROW(base + idx[i] * stride);
        switch ((nb - 1) >> 4) {   /* 16-byte moves before the last one */
            case 0: MB_SHORT_LOOP(0)    case 1: MB_SHORT_LOOP(1)
            case 2: MB_SHORT_LOOP(2)    case 3: MB_SHORT_LOOP(3)
            case 4: MB_SHORT_LOOP(4)    case 5: MB_SHORT_LOOP(5)
            case 6: MB_SHORT_LOOP(6)    case 7: MB_SHORT_LOOP(7)
            case 8: MB_SHORT_LOOP(8)    case 9: MB_SHORT_LOOP(9)
            case 10: MB_SHORT_LOOP(10)  case 11: MB_SHORT_LOOP(11)
            case 12: MB_SHORT_LOOP(12)  case 13: MB_SHORT_LOOP(13)
            case 14: MB_SHORT_LOOP(14)  case 15: MB_SHORT_LOOP(15)
            default: MB_SHORT_LOOP(16)
        }
    }
    """
    void mb_copy_short_rows(char *dst, const char *base, const int64_t *idx,
                            int64_t stride, int64_t m, int64_t nb,
                            int64_t ahead) noexcept nogil


cdef enum:
    MB_SHORT_MIN = 16
    MB_SHORT_MAX = 272    # 17 moves


cdef inline void copy_run(char *dst, const char *base, const int64_t *idx,
                          int64_t stride, int64_t m,
                          int64_t block) noexcept nogil:
    """Copy m blocks of ``block`` bytes from ``base + idx[i] * stride`` (or
    ``base + i * stride`` when idx is NULL) to consecutive places in dst.

    memcpy with a constant size compiles to one load and one store, so the
    common itemsizes get their own loops; unaligned sources stay legal.
    Sampled rows of 16 to 272 bytes go through mb_copy_short_rows: a loop
    per count of 16-byte moves, rather than libc's memcpy, whose call and
    size dispatch cost as much as copying such a row from the cache.
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
        elif MB_SHORT_MIN <= block <= MB_SHORT_MAX:
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


cdef inline void prefetch_block(const char *p, int64_t block) noexcept nogil:
    cdef int64_t o = 0
    cdef int64_t end = block if block < 64 * MB_PREFETCH_LINES else 64 * MB_PREFETCH_LINES
    while o < end:
        MB_PREFETCH(p + o)
        o += 64


cdef void copy_run_prefetch(char *dst, const char *base, const int64_t *idx,
                            int64_t stride, int64_t m, int64_t block,
                            int64_t ahead) noexcept nogil:
    """copy_run for sampled rows of a source larger than the caches: the row
    ``ahead`` positions ahead is prefetched before each copy, so that
    several cache misses are in flight at once."""
    cdef int64_t i, lead = m - ahead
    if MB_SHORT_MIN <= block <= MB_SHORT_MAX:
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


cdef inline void copy_rows_of(char *dst, const char *base, const int64_t *idx,
                              int64_t stride, int64_t m, int64_t block,
                              int prefetch) noexcept nogil:
    """copy_run_prefetch, ``prefetch`` rows ahead, when that is not 0 and
    rows are sampled (idx not NULL), else copy_run."""
    if prefetch > 0 and idx != NULL:
        copy_run_prefetch(dst, base, idx, stride, m, block, prefetch)
    else:
        copy_run(dst, base, idx, stride, m, block)


cdef struct mb_odo:
    int64_t pos[MB_MAXDIMS]         # position on each outer axis but the last
    int64_t base[MB_MAXDIMS + 1]    # base[k + 1]: source offset of axes 0..k


cdef inline bint odo_next(mb_odo *o, const mb_plan *p, const int64_t **ix,
                          const int64_t *m, int last) noexcept nogil:
    """Step the odometer of gather_nd to its next run; False past the end."""
    cdef int k = last - 1
    cdef int64_t i
    while k >= 0:
        o.pos[k] += 1
        if o.pos[k] < m[k]:
            break
        o.pos[k] = 0
        k -= 1
    if k < 0:
        return False
    while k < last:
        i = ix[k][o.pos[k]] if ix[k] != NULL else o.pos[k]
        o.base[k + 1] = o.base[k] + i * p.ax[k].stride
        k += 1
    return True


cdef void gather_nd(const mb_plan *p, const char *src, char *dst,
                    const int64_t *idx0, int64_t m0,
                    const int64_t *idx) noexcept nogil:
    """Outer-product gather (``src[np.ix_(...)]``) into C-contiguous dst.

    Axes ``0 .. nouter-1`` are walked with an odometer; axis k reads
    ``src + idx_k[i] * stride_k`` when sampled, ``src + i * stride_k`` when
    whole.  The trailing axes form one contiguous block of ``p.block`` bytes.
    Axis 0 takes its indices from ``idx0`` (m0 of them) when idx0 is not NULL;
    the other sampled axes take theirs, in axis order, from ``idx``.
    O(output bytes).

    With ``p.prefetch``, the source lines of the run MB_PREFETCH_AHEAD runs
    ahead are prefetched (a second odometer walks ahead of the first):
    10x20x30x40x50 [2, None, 20, ..., 10], whose runs jump every 40 rows,
    went from 2.8-3.1x to 3.3-3.9x NumPy; [2, ..., 10] measured 4.4-4.6x
    without and 4.2-4.5x with (two runs, interleaved on the same data).
    """
    cdef const int64_t *ix[MB_MAXDIMS]
    cdef int64_t m[MB_MAXDIMS]
    cdef mb_odo o, ahead
    cdef int last = p.nouter - 1
    cdef int k
    cdef int64_t i, off, lo = 0, hi = 0
    cdef bint more = False
    cdef const int64_t *cursor = idx
    if p.block == 0:
        return
    for k in range(p.nouter):
        m[k] = p.ax[k].m
        if p.ax[k].sampled:
            if k == 0 and idx0 != NULL:
                ix[0] = idx0
                m[0] = m0
            else:
                ix[k] = cursor
                cursor += p.ax[k].m
        else:
            ix[k] = NULL
        if m[k] == 0:
            return
    if last == 0:
        copy_rows_of(dst, src, ix[0], p.ax[0].stride, m[0], p.block, p.prefetch)
        return
    o.base[0] = 0
    for k in range(last):
        o.pos[k] = 0
        o.base[k + 1] = o.base[k] + (ix[k][0] if ix[k] != NULL else 0) * p.ax[k].stride
    if p.prefetch:
        # Bytes a run reads, from its row's base: [lo, hi + block).
        for i in range(m[last]):
            off = (ix[last][i] if ix[last] != NULL else i) * p.ax[last].stride
            if i == 0 or off < lo:
                lo = off
            if i == 0 or off > hi:
                hi = off
        # Only when the lines prefetched (at most MB_PREFETCH_LINES) cover the
        # run: 1000 x 1000 [128, 128] (runs over 8 KB rows) lost 4% with it.
        more = hi - lo + p.block <= 64 * MB_PREFETCH_LINES
        ahead = o
        i = 0
        while more and i < MB_PREFETCH_AHEAD:
            more = odo_next(&ahead, p, ix, m, last)
            i += 1
    while True:
        if more:
            prefetch_block(src + ahead.base[last] + lo, hi - lo + p.block)
            more = odo_next(&ahead, p, ix, m, last)
        copy_run(dst, src + o.base[last], ix[last], p.ax[last].stride, m[last],
                 p.block)
        dst += m[last] * p.block
        if not odo_next(&o, p, ix, m, last):
            return


# ---------------------------------------------------------------- drawing

cdef int64_t plan_scratch_size(const mb_plan *p) noexcept nogil:
    """int64 entries of scratch that draw_gather needs (0: none)."""
    if p.fused:
        return 0
    return p.nidx + p.nwork


cdef void draw_plan_indices(const mb_plan *p, uint64_t step, int64_t *idx,
                            int64_t *work) noexcept nogil:
    """Draw the indices of every sampled axis, in axis order, into idx."""
    cdef int k
    cdef const mb_axis *a
    for k in range(p.ndim):
        a = &p.ax[k]
        if not a.sampled:
            continue
        if a.replace:
            sample_replace(a.key0, a.key1, a.sid, step, a.n, a.m, idx)
        else:
            sample_noreplace(a.key0, a.key1, a.sid, step, a.n, a.m, idx, work)
        idx += a.m


cdef enum:
    MB_MAX_GROUP = 32    # arrays one draw_group call gathers with one draw


cdef bint same_streams(const mb_plan *a, const mb_plan *b) noexcept nogil:
    """True when the two plans draw the same indices at every step: the same
    sampled axes (position, key, length, batch size, replace), in order."""
    cdef int i = 0, j = 0
    cdef const mb_axis *x
    cdef const mb_axis *y
    while True:
        while i < a.ndim and not a.ax[i].sampled:
            i += 1
        while j < b.ndim and not b.ax[j].sampled:
            j += 1
        if i == a.ndim or j == b.ndim:
            return i == a.ndim and j == b.ndim
        x = &a.ax[i]
        y = &b.ax[j]
        if (x.sid != y.sid or x.key0 != y.key0 or x.key1 != y.key1 or x.n != y.n
                or x.m != y.m or x.replace != y.replace):
            return False
        i += 1
        j += 1


cdef struct gather_job:
    int k                  # arrays gathered with the same indices (1 for a Sampler)
    const mb_plan **p      # their plans, whose streams are the same (same_streams)
    const char **src
    char **dst             # each array's whole output
    const int64_t *idx     # all drawn indices (NULL: fused, draw as you go)
    uint64_t step
    int64_t start          # first axis-0 position of this job
    int64_t count          # axis-0 positions in this job


cdef void run_job(void *arg) noexcept nogil:
    """Gather axis-0 positions [start, start + count) of a batch of each of
    the k arrays into its output.

    Fused (idx NULL): draw MB_CHUNK indices into a stack buffer, then copy
    those rows of every array in a tight loop whose loads are independent,
    so that many cache misses are in flight at once; no scratch, and the
    indices are drawn once for all the arrays.  Otherwise read the indices
    already drawn into idx (axis 0's first, then the other sampled axes').
    """
    cdef gather_job *g = <gather_job *>arg
    cdef const mb_plan *p
    cdef const mb_axis *a = &g.p[0].ax[0]
    cdef int64_t chunk[MB_CHUNK]
    cdef philox_pos st
    cdef int64_t done = 0, cnt
    cdef int i
    if g.idx != NULL:
        for i in range(g.k):
            p = g.p[i]
            if a.sampled:
                gather_nd(p, g.src[i], g.dst[i] + g.start * p.row_out, g.idx + g.start,
                          g.count, g.idx + a.m)
            else:
                gather_nd(p, g.src[i], g.dst[i], NULL, 0, g.idx)
        return
    pos_init(&st, a.key0, a.key1, g.step, a.sid)
    while done < g.count:
        cnt = g.count - done
        if cnt > MB_CHUNK:
            cnt = MB_CHUNK
        fill_bounded(&st, <uint64_t>(g.start + done), <uint64_t>a.n, chunk, cnt)
        for i in range(g.k):
            p = g.p[i]
            gather_nd(p, g.src[i], g.dst[i] + (g.start + done) * p.row_out, chunk, cnt, NULL)
        done += cnt


cdef struct chunked_job:
    gather_job job         # the whole batch (start 0, count a.m)
    int64_t chunk          # axis-0 positions a chunk


cdef void run_chunk(void *ctx, int64_t c) noexcept nogil:
    """run_job on chunk c of a chunked_job."""
    cdef chunked_job *cj = <chunked_job *>ctx
    cdef gather_job g = cj.job
    g.start = c * cj.chunk
    g.count = cj.job.count - g.start
    if g.count > cj.chunk:
        g.count = cj.chunk
    run_job(&g)


cdef int64_t SHARE_CHUNKS = 16   # chunks a split batch is cut into


cdef void draw_gather_k(int k, const mb_plan **p, const char **src, char **dst,
                        uint64_t step, int64_t *scratch, int nthreads) noexcept nogil:
    """Draw batch ``step`` of k arrays whose plans share their streams
    (same_streams with p[0]) and gather each into its dst.

    ``scratch`` holds ``plan_scratch_size(p[0])`` int64 (may be NULL when
    that is 0).  Fused plans (only axis 0 sampled, with replacement) draw as
    they copy; others draw every index into scratch first; either way the
    indices are drawn once for all k arrays.  With ``nthreads`` > 1 and axis
    0 sampled, the batch is cut along axis 0 into SHARE_CHUNKS chunks that
    this thread and a helper claim in turn (mb_run_shared; each draw is
    addressable, so a fused chunk draws its own indices).
    """
    cdef gather_job job
    cdef chunked_job shared
    cdef const mb_axis *a = &p[0].ax[0]
    job.k = k
    job.p = p
    job.src = src
    job.dst = dst
    job.idx = NULL
    job.step = step
    job.start = 0
    job.count = a.m
    if not p[0].fused:
        draw_plan_indices(p[0], step, scratch, scratch + p[0].nidx)
        job.idx = scratch
    # Chunks of a multiple of 8 positions (whole Philox blocks, so a fused
    # chunk's draws start on the vector path); at least two, or no helper.
    shared.chunk = (a.m + SHARE_CHUNKS - 1) // SHARE_CHUNKS
    shared.chunk = (shared.chunk + 7) // 8 * 8
    if nthreads <= 1 or not a.sampled or a.m <= shared.chunk:
        run_job(&job)
        return
    shared.job = job
    mb_run_shared(run_chunk, &shared, (a.m + shared.chunk - 1) // shared.chunk)


cdef api int draw_gather(const mb_plan *p, const char *src, char *dst,
                         uint64_t step, int64_t *scratch, int nthreads) noexcept nogil:
    """Draw batch ``step`` of the plan's streams and gather it into dst:
    ``draw_gather_k`` for one array.  Returns 0."""
    draw_gather_k(1, &p, &src, &dst, step, scratch, nthreads)
    return 0


# ---------------------------------------------------------------- wrapper

def _simd(level=None):
    """_simd(level=None): this module's vector level for drawing (see
    ``_philox.simd_switch``); for tests and benchmarks."""
    return simd_switch(level)


def _tune(parallel_min_bytes=None, prefetch=None, parallel_min_ns=None):
    """_tune(parallel_min_bytes=None, prefetch=None, parallel_min_ns=None)

    For tests and benchmarks: set the output size (bytes) below which a
    batch never runs on two threads (times PARALLEL_ND_FACTOR for
    multi-axis walks, where it is the whole rule) and the estimated
    one-thread time (ns) from which a single-axis batch does, both read on
    every batch; and whether the Samplers built from now on prefetch rows
    ("on": MB_PREFETCH_AHEAD rows ahead, "off"; "auto": by source span
    and row size).  None leaves a
    setting alone.  Returns the old settings, in an order that
    ``_tune(*old)`` restores.
    """
    global PARALLEL_MIN_BYTES, PARALLEL_MIN_NS, forced_prefetch
    cdef dict modes = {"auto": -1, "off": 0, "on": 1}
    old = (PARALLEL_MIN_BYTES, [k for k, v in modes.items() if v == forced_prefetch][0],
           PARALLEL_MIN_NS)
    if prefetch is not None and prefetch not in modes:
        raise ValueError(f"prefetch must be one of {sorted(modes)}, got {prefetch!r}")
    if parallel_min_bytes is not None:
        PARALLEL_MIN_BYTES = parallel_min_bytes
    if parallel_min_ns is not None:
        PARALLEL_MIN_NS = parallel_min_ns
    if prefetch is not None:
        forced_prefetch = modes[prefetch]
    return old


def _prefetch_ahead(Sampler s not None):
    """_prefetch_ahead(sampler)

    For tests: rows (runs) between a prefetch and its copy in this
    Sampler's plan, 0 when it does not prefetch.
    """
    return s.plan.prefetch


def _batch_threads(Sampler s not None):
    """_batch_threads(sampler)

    For tests: the threads a batch of this Sampler runs on now (1 or 2).
    """
    return threads_for(&s.plan, s.out_bytes, s.span)


def set_num_threads(int n):
    """set_num_threads(n)

    Use at most n (1 or 2) threads for one large batch.  Returns the old value.
    """
    global max_threads
    if n < 1 or n > MB_MAX_THREADS:
        raise ValueError(f"n must be 1 to {MB_MAX_THREADS}, got {n}")
    old = max_threads
    max_threads = n
    return old

# What a Sampler refuses to attempt (ValueError at construction): more
# indices a batch than this, in all sampled axes together (a batch of empty
# rows, which copies nothing, would still draw them) ...
MAX_BATCH_INDICES = 1 << 31
# ... and more index scratch a batch than this (8 bytes an index, plus the
# work space of replace=False: up to 8 entries an index).
MAX_SCRATCH_BYTES = 1 << 35


cdef class Sampler:
    """Sampler(data, sizes, keys, replace)

    A compiled plan for drawing batches of ``data``.  Validation of user input
    is the core's job (``mbcore``); this checks only what the kernel relies on.

    Parameters
    ----------
    data : ndarray
        Any layout (C, F, sliced, negative or zero strides), any non-object
        dtype.  Read in place; a reference is kept.
    sizes : sequence of (int or None), one per axis
        Batch size of a sampled axis, None for an axis taken whole.
    keys : sequence of ((int, int) or None), one per axis
        The 128-bit Philox key of each sampled axis.
    replace : bool

    Attributes
    ----------
    step : int
        The step the next call of ``next`` draws.
    """
    cdef mb_plan plan
    cdef readonly object data
    cdef readonly object sizes
    cdef readonly object keys
    cdef readonly bint replace
    cdef cnp.dtype descr
    cdef int out_nd
    cdef cnp.npy_intp out_shape[MB_MAXDIMS]
    cdef public uint64_t step
    cdef int64_t out_bytes
    cdef int64_t *scratch_buf     # index scratch reused between batches (_scratch)
    cdef int64_t scratch_cap
    cdef bint scratch_busy
    cdef bint keep_gil            # a batch too small to release the GIL for
    cdef int64_t span             # bytes the source spans
    cdef const char *src_lo       # the source's bytes: [src_lo, src_hi)
    cdef const char *src_hi

    def __dealloc__(self):
        PyMem_RawFree(self.scratch_buf)

    def __cinit__(self, cnp.ndarray data not None, sizes, keys, bint replace):
        cdef int nd = cnp.PyArray_NDIM(data)
        cdef int k
        cdef int64_t expected, run, isz = cnp.PyArray_ITEMSIZE(data)
        cdef int64_t reach
        cdef mb_axis *a
        cdef object size, elements
        if nd < 1 or nd > MB_MAXDIMS:
            raise ValueError(f"data must have 1 to {MB_MAXDIMS} dimensions, got {nd}")
        if data.dtype.hasobject:
            raise TypeError(f"data must not hold Python objects, got dtype {data.dtype}")
        if len(sizes) != nd or len(keys) != nd:
            raise ValueError(f"sizes and keys need {nd} entries, got {len(sizes)} and {len(keys)}")
        self.data = data
        self.sizes = tuple(sizes)
        self.keys = tuple(keys)
        self.replace = replace
        self.descr = data.dtype
        self.step = 0
        self.plan.ndim = nd
        self.plan.nidx = 0
        self.plan.nwork = 0
        for k in range(nd):
            a = &self.plan.ax[k]
            a.n = cnp.PyArray_DIM(data, k)
            a.stride = cnp.PyArray_STRIDE(data, k)
            a.sid = k
            a.replace = replace
            a.sampled = sizes[k] is not None
            a.key0 = a.key1 = 0
            if a.sampled:
                # Checked as Python ints: nothing below can wrap around.
                size = sizes[k]
                if size > MAX_BATCH_INDICES:
                    raise ValueError(
                        f"batch_size must be at most 2**31 ({MAX_BATCH_INDICES}) on every "
                        f"sampled axis, got {size} on axis {k}")
                a.m = size
                a.key0, a.key1 = keys[k]
                if a.n <= 0 or a.m < 0 or (not replace and a.m > a.n):
                    raise ValueError(f"cannot sample {a.m} of {a.n} along axis {k}")
                self.plan.nidx += a.m
                if not replace:
                    self.plan.nwork = max(self.plan.nwork, noreplace_work_size(a.n, a.m))
            else:
                a.m = a.n
            self.out_shape[k] = a.m
        # Refused, not attempted: more indices than any batch needs (a batch
        # of empty rows would draw them all the same), index scratch beyond
        # MAX_SCRATCH_BYTES, a batch larger than NumPy can allocate.
        if self.plan.nidx > MAX_BATCH_INDICES:
            raise ValueError(
                f"batch_size must draw at most 2**31 ({MAX_BATCH_INDICES}) indices a batch "
                f"in all, got {self.plan.nidx} (sizes {tuple(s for s in self.sizes if s is not None)} "
                f"of the sampled axes)")
        if (self.plan.nidx + self.plan.nwork) * 8 > MAX_SCRATCH_BYTES:
            raise ValueError(
                f"batch_size needs {(self.plan.nidx + self.plan.nwork) * 8} bytes of index "
                f"scratch a batch, more than the limit of 2**35 ({MAX_SCRATCH_BYTES}): "
                f"sizes {tuple(s for s in self.sizes if s is not None)} of the sampled axes, "
                f"replace={bool(replace)}")
        elements = 1
        for k in range(nd):
            elements *= self.out_shape[k]
        if elements * isz > PY_SSIZE_T_MAX:
            raise ValueError(
                f"batch_size gives batches of shape "
                f"{tuple(self.out_shape[k] for k in range(nd))} and {elements * isz} bytes, "
                f"more than the largest NumPy array ({PY_SSIZE_T_MAX} bytes)")
        self.out_nd = nd
        # Merge trailing whole axes that are contiguous in the source into
        # one block copied with a single memcpy.
        expected = isz
        k = nd - 1
        while k >= 0 and not self.plan.ax[k].sampled and (
                self.plan.ax[k].n == 1 or self.plan.ax[k].stride == expected):
            expected *= self.plan.ax[k].n
            k -= 1
        if k < 0:
            raise ValueError("sizes must sample at least one axis")
        self.plan.nouter = k + 1
        self.plan.block = expected
        self.plan.row_out = isz
        for k in range(1, nd):
            self.plan.row_out *= self.out_shape[k]
        self.plan.fused = self.plan.ax[0].sampled and replace and \
            self.plan.nidx == self.plan.ax[0].m
        # Bytes spanned by the source: beyond the caches, rows are prefetched
        # (the measurements are next to the thresholds).
        span = isz
        self.src_lo = self.src_hi = <const char *>cnp.PyArray_DATA(data)
        for k in range(nd):
            span += abs(self.plan.ax[k].stride) * (self.plan.ax[k].n - 1)
            reach = self.plan.ax[k].stride * (self.plan.ax[k].n - 1)
            if reach < 0:
                self.src_lo += reach
            else:
                self.src_hi += reach
        self.src_hi += isz
        if cnp.PyArray_SIZE(data) == 0:
            self.src_hi = self.src_lo
        self.span = span
        # A run of several outer axes copies m blocks of its last axis.
        run = self.plan.block * (self.plan.ax[self.plan.nouter - 1].m if self.plan.nouter > 1 else 1)
        if forced_prefetch >= 0:
            self.plan.prefetch = MB_PREFETCH_AHEAD if forced_prefetch else 0
        else:
            self.plan.prefetch = auto_prefetch(span, run, self.plan.nouter > 1)
        self.out_bytes = isz
        for k in range(nd):
            self.out_bytes *= self.out_shape[k]
        self.keep_gil = keeps_gil(self.plan.nidx, self.out_bytes)

    @property
    def shape(self):
        """Shape of every batch."""
        return tuple(self.out_shape[k] for k in range(self.out_nd))

    @property
    def dtype(self):
        return self.descr

    cdef bint _fits(self, out):
        """out is an ndarray this batch can be written into (C-level checks:
        the attribute lookups of ``out.shape`` etc. made an ``out=`` call
        2.5x slower than a fresh batch at b=128)."""
        cdef cnp.ndarray a
        cdef cnp.dtype d
        cdef int k
        if not cnp.PyArray_Check(out):
            return False
        a = <cnp.ndarray>out
        if cnp.PyArray_NDIM(a) != self.out_nd:
            return False
        for k in range(self.out_nd):
            if cnp.PyArray_DIM(a, k) != self.out_shape[k]:
                return False
        if not (cnp.PyArray_IS_C_CONTIGUOUS(a) and cnp.PyArray_ISWRITEABLE(a)):
            return False
        d = <cnp.dtype>cnp.PyArray_DESCR(a)
        return d is self.descr or cnp.PyArray_EquivTypes(d, self.descr)

    cdef cnp.ndarray _alloc(self, out):
        """A new batch array, or out once it is checked to fit."""
        if out is None:
            Py_INCREF(self.descr)   # PyArray_Empty steals a reference
            return PyArray_Empty(self.out_nd, self.out_shape, self.descr, 0)
        if not self._fits(out):
            raise ValueError(
                f"out must be a writeable C-contiguous array of shape {self.shape} "
                f"and dtype {self.descr}, got "
                + (f"shape {out.shape}, dtype {out.dtype}" if isinstance(out, np.ndarray)
                   else repr(type(out))))
        return out

    cdef bint _overlaps(self, cnp.ndarray res, int64_t nbytes):
        """The first nbytes of res share bytes with the source's range: a
        batch written into res could overwrite rows before they are read."""
        cdef const char *lo = <const char *>cnp.PyArray_DATA(res)
        return nbytes > 0 and lo < self.src_hi and self.src_lo < lo + nbytes

    cdef object _draw(self, uint64_t step, cnp.ndarray res):
        """Draw batch ``step`` into res, an array from _alloc.  A batch of no
        bytes draws nothing; an ``out`` that overlaps the source receives a
        batch drawn into a fresh array first (as NumPy's take(out=) does)."""
        cdef const char *src = <const char *>cnp.PyArray_DATA(self.data)
        cdef char *dst = <char *>cnp.PyArray_DATA(res)
        cdef int nthreads
        cdef int64_t small[MB_SMALL_SCRATCH]
        cdef int how
        cdef int64_t *scratch
        cdef cnp.ndarray tmp
        if self.out_bytes == 0:
            return res
        if self._overlaps(res, self.out_bytes):
            tmp = self._draw(step, self._alloc(None))
            memcpy(dst, cnp.PyArray_DATA(tmp), self.out_bytes)
            return res
        nthreads = threads_for(&self.plan, self.out_bytes, self.span)
        scratch = self._scratch(plan_scratch_size(&self.plan), small, &how)
        if self.keep_gil:
            draw_gather(&self.plan, src, dst, step, scratch, nthreads)
        else:
            with nogil:
                draw_gather(&self.plan, src, dst, step, scratch, nthreads)
        self._scratch_release(scratch, how)
        return res

    cdef int64_t *_scratch(self, int64_t n, int64_t *small, int *how) except NULL:
        """Index scratch of n int64 for one batch: ``small`` (the caller's
        MB_SMALL_SCRATCH entries on the stack) when n fits (how = 0), else
        this Sampler's buffer, reused between batches, unless another batch
        holds it (how = 1), else a new one (how = 2).  Page faults of a fresh
        800 KB buffer cost ~0.5 ms a batch here."""
        cdef int64_t *p
        if n <= MB_SMALL_SCRATCH:
            how[0] = 0
            return small
        # The GIL is held: testing and setting scratch_busy is atomic.
        if not self.scratch_busy:
            if self.scratch_cap < n:
                PyMem_RawFree(self.scratch_buf)
                self.scratch_buf = <int64_t *>PyMem_RawMalloc(n * sizeof(int64_t))
                self.scratch_cap = n if self.scratch_buf != NULL else 0
            if self.scratch_buf != NULL:
                self.scratch_busy = True
                how[0] = 1
                return self.scratch_buf
        p = <int64_t *>PyMem_RawMalloc(n * sizeof(int64_t))
        if p == NULL:
            raise MemoryError(f"cannot allocate {n * 8} bytes of index scratch")
        how[0] = 2
        return p

    cdef void _scratch_release(self, int64_t *p, int how):
        if how == 1:
            self.scratch_busy = False
        elif how == 2:
            PyMem_RawFree(p)

    def next(self, out=None):
        """next(out=None)

        The batch at ``step``, then ``step += 1``.  The step is taken and
        advanced while the GIL is held, so threads sharing a Sampler draw
        distinct steps.  At step 2**64 - 1, which cannot advance, raises
        OverflowError and draws nothing.
        """
        return self._next(out)

    cdef object _next(self, out):
        """next() for C callers (BatchIterator)."""
        cdef uint64_t t = self.step
        cdef cnp.ndarray res
        if t == 0xFFFFFFFFFFFFFFFFULL:
            raise OverflowError(
                f"step is {t} (2**64 - 1), the last of the stream: next() cannot move "
                "past it; draw(step) draws that batch")
        res = self._alloc(out)   # before the step moves: a rejected out= skips no batch
        self.step = t + 1
        return self._draw(t, res)

    def draw(self, uint64_t step, out=None):
        """draw(step, out=None)

        Batch ``step`` of the stream, whatever ``self.step`` is; pure.
        """
        return self._draw(step, self._alloc(out))

    def indices(self, uint64_t step):
        """indices(step)

        Tuple with one entry per axis: the int64 indices batch ``step`` uses
        on a sampled axis, None on an axis taken whole.
        """
        cdef cnp.ndarray idx = np.empty(self.plan.nidx, np.int64)
        cdef cnp.ndarray work = np.empty(self.plan.nwork, np.int64)
        cdef int64_t *ip = <int64_t *>cnp.PyArray_DATA(idx)
        cdef int64_t *wp = <int64_t *>cnp.PyArray_DATA(work)
        with nogil:
            draw_plan_indices(&self.plan, step, ip, wp)
        res = []
        cdef int64_t start = 0
        cdef int k
        for k in range(self.plan.ndim):
            if self.plan.ax[k].sampled:
                res.append(idx[start:start + self.plan.ax[k].m])
                start += self.plan.ax[k].m
            else:
                res.append(None)
        return tuple(res)


@cython.auto_pickle(False)     # subclasses pickle themselves (Minibatch)
cdef class BatchIterator:
    """Base of ``mbcore.Minibatch``: iterates over the batches of the Sampler
    in ``_sampler`` with no Python frame between ``next(mb)`` and the kernel.

    Measured against the same Sampler behind a Python-level ``__next__``
    (``return self._sampler.next()``, the old Minibatch), all in shuffled
    order in one process, two runs (NumPy's time includes a lambda frame, as
    does ``next(mb)`` here): a batch of one row (1e5 x 10) 453-464 -> 366-373
    ns with ``next(mb)``, 336-347 -> 285-296 ns with ``mb.__next__``; b=128,
    1e5 x 10: 6.40-6.70x -> 6.75-7.11x NumPy (``next(mb)``), 7.11-7.38x ->
    7.27-7.57x (``mb.__next__``); 1e4 x 1, b=128: 9.26-10.15x -> 10.17-11.05x
    (``next(mb)``); the two sides shared a seed, so the b=128 ratios may
    be measured with rows in the cache for either; the one-row times are
    the clean measure.  What counts is that no Python code runs: Minibatch, a
    Python subclass, still reaches this ``__next__`` through CPython's
    generic slot (a lookup by name, because Cython also lists ``__next__``
    as a method), which cost 316-322 against 297-298 ns for a bare
    BatchIterator at one row; an earlier session's cyfunction ``__next__``,
    a Python-level attribute lookup of ``_sampler`` and a call of its
    ``next``, had gained nothing.
    """
    cdef public Sampler _sampler
    cdef uint64_t _step           # the step the next batch draws
    cdef uint64_t _swap_step      # the step at the last _swap
    cdef object _before           # see _swap

    def __iter__(self):
        return self

    # The step lives here, not in the Sampler, so that set_value() (_swap)
    # cannot hand a step out twice or lose one: next() reads the Sampler and
    # takes its step, and _swap replaces the Sampler and reads the step, each
    # with nothing between that could let another thread run (no Python
    # code, no allocation: a garbage collection may run finalizers).  Each
    # call holds its own reference to the Sampler: another thread's
    # set_value() may replace self._sampler while this batch is drawn
    # without the GIL, and the old Sampler (with its data) must live until
    # the batch is done.
    cdef object _next(self, out):
        cdef Sampler s
        cdef cnp.ndarray res
        cdef uint64_t t
        while True:
            s = self._sampler
            if s is None:
                raise TypeError(f"{type(self).__name__} has no data yet: __init__ was not run")
            res = s._alloc(out)   # before the step moves: a rejected out= skips no batch
            if self._sampler is s:
                break             # else replaced during the allocation: again
        t = self._step
        if t == 0xFFFFFFFFFFFFFFFFULL:
            raise OverflowError(
                f"step is {t} (2**64 - 1), the last of the stream: next() cannot move "
                "past it; draw(step) draws that batch")
        self._step = t + 1
        return s._draw(t, res)

    def __next__(self):
        return self._next(None)

    def next(self, out=None):
        """next(out=None)

        The next batch; ``out`` (C-contiguous, the batch's shape and dtype)
        is filled and returned instead of a new array.  An ``out`` that
        overlaps the data is filled with a batch drawn into a fresh array
        first, so that it holds the same values as without ``out``.
        """
        return self._next(out)

    @property
    def step(self):
        """Number of batches drawn so far; the next batch is batch ``step``."""
        return self._step

    def __reduce__(self):
        raise TypeError(f"cannot pickle a bare {type(self).__name__}: it holds no spec to "
                        "rebuild its Sampler from; subclasses that do (mbcore.Minibatch) "
                        "define __reduce__ and pickle with every protocol")

    def _seek(self, uint64_t step):
        """Make ``step`` the next batch's, and forget the batch before the
        last ``_swap`` (``_last``)."""
        cdef object before = self._before     # released after the change
        self._step = step
        self._before = None

    def _swap(self, Sampler new not None, before):
        """_swap(new, before)

        Draw from ``new`` from now on, atomically with respect to next().
        ``before`` tells the indices of the batch before this step (an
        object with ``indices(step)``, or their tuple), which ``_last``
        returns until the step moves, unless an earlier ``_swap`` at this
        same step left one (the last batch is still its).  Returns the step.
        """
        cdef Sampler old = self._sampler      # these two are released after
        cdef object old_before = self._before     # the change
        cdef uint64_t t = self._step
        self._sampler = new
        if not (old_before is not None and self._swap_step == t):
            self._before = before
            self._swap_step = t
        return t

    def _last(self):
        """_last() -> (step, before, sampler), read together: ``before`` is
        what ``_swap`` left for the batch before ``step`` when nothing was
        drawn since (and no ``_seek``), else None."""
        cdef uint64_t t = self._step
        cdef Sampler s = self._sampler
        cdef object b = self._before
        if self._swap_step != t:
            b = None
        return t, b, s


def draw_group(samplers, uint64_t step, outs=None):
    """draw_group(samplers, step, outs=None)

    ``tuple(s.draw(step, out) for s, out in zip(samplers, outs))``, in one
    ``nogil`` call that draws the indices once for all the arrays when their
    sampled axes share streams (same positions, keys, lengths, batch sizes
    and ``replace``: what ``mbcore.minibatches`` builds), and gathers each
    chunk of indices from every array while it is in cache.  Samplers whose
    streams differ are drawn one by one; the values are the same either way.
    ``outs`` is None or one entry (an array or None) per sampler.
    """
    cdef Py_ssize_t k = len(samplers), i, j
    cdef Sampler first, s
    cdef const mb_plan *plans[MB_MAX_GROUP]
    cdef const char *srcs[MB_MAX_GROUP]
    cdef char *dsts[MB_MAX_GROUP]
    cdef int64_t small[MB_SMALL_SCRATCH]
    cdef int64_t *scratch
    cdef int64_t nbytes = 0, span = 0
    cdef int nthreads, how
    cdef bint shared = 0 < k <= MB_MAX_GROUP
    if outs is None:
        outs = (None,) * k
    elif len(outs) != k:
        raise ValueError(f"outs must have {k} entries (one per sampler), got {len(outs)}")
    if k == 0:
        return ()
    first = <Sampler?>samplers[0]
    for i in range(k):
        s = <Sampler?>samplers[i]
        shared = shared and same_streams(&first.plan, &s.plan)
    # Every out is checked before anything is written.
    res = [(<Sampler>samplers[i])._alloc(outs[i]) for i in range(k)]
    # An out that overlaps any of the sources (not only its own) gets a
    # fresh array, copied into it once every array is drawn.
    dst = list(res)
    for i in range(k):
        if outs[i] is None:
            continue
        for j in range(k):
            if (<Sampler>samplers[j])._overlaps(<cnp.ndarray>res[i],
                                                 (<Sampler>samplers[i]).out_bytes):
                dst[i] = (<Sampler>samplers[i])._alloc(None)
                break
    if not shared:
        for i in range(k):
            (<Sampler>samplers[i])._draw(step, dst[i])
    else:
        for i in range(k):
            s = <Sampler>samplers[i]
            plans[i] = &s.plan
            srcs[i] = <const char *>cnp.PyArray_DATA(s.data)
            dsts[i] = <char *>cnp.PyArray_DATA(<cnp.ndarray>dst[i])
            nbytes += s.out_bytes
            span = max(span, s.span)
        if nbytes:           # batches of no bytes: nothing to draw
            nthreads = threads_for(&first.plan, nbytes, span)
            scratch = first._scratch(plan_scratch_size(&first.plan), small, &how)
            with nogil:
                draw_gather_k(<int>k, plans, srcs, dsts, step, scratch, nthreads)
            first._scratch_release(scratch, how)
    for i in range(k):
        if dst[i] is not res[i]:
            memcpy(cnp.PyArray_DATA(<cnp.ndarray>res[i]), cnp.PyArray_DATA(<cnp.ndarray>dst[i]),
                   (<Sampler>samplers[i]).out_bytes)
    return tuple(res)


def copy_floor(cnp.ndarray src not None, cnp.ndarray dst not None, Py_ssize_t offset):
    """copy_floor(src, dst, offset)

    Copy ``dst.nbytes`` contiguous bytes of C-contiguous ``src``, starting at
    byte ``offset``, into C-contiguous ``dst``: the floor a gather of the same
    number of bytes is measured against in the benchmarks.
    """
    cdef Py_ssize_t nbytes = cnp.PyArray_NBYTES(dst)
    if not (cnp.PyArray_IS_C_CONTIGUOUS(src) and cnp.PyArray_IS_C_CONTIGUOUS(dst)):
        raise ValueError("src and dst must be C-contiguous")
    if offset < 0 or offset + nbytes > cnp.PyArray_NBYTES(src):
        raise ValueError(f"offset must be in [0, {cnp.PyArray_NBYTES(src) - nbytes}], got {offset}")
    cdef const char *s = <const char *>cnp.PyArray_DATA(src) + offset
    cdef char *d = <char *>cnp.PyArray_DATA(dst)
    with nogil:
        memcpy(d, s, nbytes)


def copy_rows(cnp.ndarray src not None, cnp.ndarray idx not None, cnp.ndarray dst not None):
    """copy_rows(src, idx, dst)

    ``dst[:] = src[idx]`` for C-contiguous ``src`` and ``dst`` and a
    C-contiguous int64 vector ``idx`` of indices into ``src``'s first axis,
    with the copy loop of the fused kernel (prefetching by the same rule), on
    one thread: the copies of a batch alone, indices given, with no drawing
    and no allocation.  The benchmarks measure it beside ``next(mb)``.  The
    checks are C-level, as in ``Sampler``, so that at small batches the time
    is the copy's.
    """
    cdef Py_ssize_t m, k, row
    cdef const int64_t *ip
    cdef int64_t lo = 0, hi = 0, v, n
    cdef int ax
    cdef bint fits
    if not (cnp.PyArray_IS_C_CONTIGUOUS(src) and cnp.PyArray_IS_C_CONTIGUOUS(dst)
            and cnp.PyArray_IS_C_CONTIGUOUS(idx)):
        raise ValueError("src, idx and dst must be C-contiguous")
    if cnp.PyArray_NDIM(src) < 1 or cnp.PyArray_NDIM(idx) != 1 or cnp.PyArray_TYPE(idx) != cnp.NPY_INT64:
        raise ValueError(f"src must have an axis and idx must be a 1-d int64 array, got "
                         f"src.ndim {src.ndim}, idx {idx.dtype} of ndim {idx.ndim}")
    n = cnp.PyArray_DIM(src, 0)
    m = cnp.PyArray_DIM(idx, 0)
    fits = (cnp.PyArray_NDIM(dst) == cnp.PyArray_NDIM(src) and cnp.PyArray_DIM(dst, 0) == m
            and cnp.PyArray_ISWRITEABLE(dst)
            and cnp.PyArray_EquivTypes(<cnp.dtype>cnp.PyArray_DESCR(dst),
                                         <cnp.dtype>cnp.PyArray_DESCR(src)))
    ax = 1
    while fits and ax < cnp.PyArray_NDIM(src):
        fits = cnp.PyArray_DIM(dst, ax) == cnp.PyArray_DIM(src, ax)
        ax += 1
    if not fits:
        raise ValueError(f"dst must be a writeable array of shape "
                         f"{(m,) + (<object>src).shape[1:]} and dtype {src.dtype}, got "
                         f"{(<object>dst).shape} and {dst.dtype}")
    ip = <const int64_t *>cnp.PyArray_DATA(idx)
    if m:
        lo = hi = ip[0]
    for k in range(m):
        v = ip[k]
        lo = v if v < lo else lo
        hi = v if v > hi else hi
    if m and (lo < 0 or hi >= n):
        raise ValueError(f"idx must be in [0, {n}), got values from {lo} to {hi}")
    row = cnp.PyArray_NBYTES(src) // n if n else 0
    cdef const char *s = <const char *>cnp.PyArray_DATA(src)
    cdef char *d = <char *>cnp.PyArray_DATA(dst)
    cdef int prefetch = auto_prefetch(cnp.PyArray_NBYTES(src), row, False)
    if row == 0 or m == 0:
        return
    if keeps_gil(m, m * row):
        copy_rows_of(d, s, ip, row, m, row, prefetch)
    else:
        with nogil:
            copy_rows_of(d, s, ip, row, m, row, prefetch)
