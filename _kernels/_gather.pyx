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
from libc.string cimport memcpy, memset
from libc.stdlib cimport malloc, free
from libc.stdint cimport uint32_t, uint64_t, int64_t, INT64_MAX

from _philox cimport (philox_pos, pos_init, fill_bounded, MB_PREFETCH, simd_switch,
                     mb_simd_set, mb_simd_get, mb_simd_detect)
from _samplers cimport sample_replace, sample_noreplace, noreplace_work_size
from _permute cimport (fill_epoch, epoch_cursor, epoch_start, epoch_fill, mb_perm_digit,
                       EPOCHS_OFF,
                       EPOCHS_WRAP, EPOCHS_SHORT)

cnp.import_array()
mb_simd_set(mb_simd_detect())   # the widest vector level for drawing (_philox.pxd)

cdef extern from "mb_pool.h":
    # The persistent worker pool (mb_pool.h): a batch split into chunks that
    # the caller and the workers claim from a shared counter.
    ctypedef void (*mb_chunk_fn)(void *, int64_t) noexcept nogil
    int mb_pool_run(mb_chunk_fn fn, void *ctx, int64_t nchunks, int nthreads) noexcept nogil
    int mb_pool_size() noexcept nogil
    int64_t mb_pool_wake_ns(int tries, int gap_us) noexcept nogil
    int64_t mb_now_ns() noexcept nogil
    int64_t mb_load(const int64_t *p) noexcept nogil
    void mb_store(int64_t *p, int64_t v) noexcept nogil
    void mb_touch(const char *p, int64_t bytes) noexcept nogil
    enum: MB_POOL_MAX

cdef extern from "numpy/arrayobject.h":
    # numpy's __init__.pxd leaves this out; the descr reference is stolen.
    object PyArray_Empty(int nd, cnp.npy_intp *dims, cnp.dtype descr, int fortran)


cdef enum:
    MB_MAXDIMS = 64      # NPY_MAXDIMS of NumPy 2 (NumPy 1.x has 32)
    MB_CHUNK = 256       # indices drawn ahead of the copy in the fused loop
    MB_PREFETCH_LINES = 16  # at most this many 64-byte lines prefetched per row
    MB_SMALL_SCRATCH = 512   # int64 of index scratch on the stack; more: _scratch


# ---------------------------------------------------------------- dispatch
# Every choice below is measured on the machine the batch runs on (at first
# need, once per process), or is a rule with its reason; docs/tuning.md has
# the method and the tables that chose each rule, with the machines named.
#
# Calibration cells: one per (source span, row size) class, both rounded up
# to a power of two.  A cell holds the prefetch distance that copied random
# rows of that class fastest and the time per row at that distance, packed
# as (ps per row) << 8 | distance; 0 while not measured.

cdef enum:
    CAL_SPANS = 64
    CAL_ROWS = 48
    CAL_NDIST = 5
    CAL_SAMPLE = 512        # rows copied per timed gather
    CAL_ROUNDS = 9          # shuffled rounds; the minimum of each is kept
    CAL_MAX_BYTES = 1 << 18 # bytes copied per timed gather, at most
    CAL_WARM_ROUNDS = 9     # walks: untimed rounds first

cdef int64_t cal_cells[CAL_SPANS][CAL_ROWS]
# Multi-axis walks (gather_nd over several outer axes): one cell per (source
# span, run size) class, a run being the blocks of one row of the last
# outer axis; the same packing, the time per block copied.
# and by the number of sampled axes the walk jumps along: walks of one
# class that jump differently gain differently (on a 10x20x30x40x50 array,
# [2, ..., 10] gains nothing from prefetching, and [2, None, 20, ..., 10]
# runs 2.5-3x faster 32 runs ahead: one cell for both picked "none").
cdef enum:
    WALK_KINDS = 7          # 1, 2, ..., 7 or more sampled outer axes
cdef int64_t walk_cells[CAL_SPANS][CAL_ROWS][WALK_KINDS]
cdef int64_t cal_draw_ps[3]          # ps an index drawn, per vector level; 0: not measured
cdef int64_t cal_wake_ns = 0         # a sleeping worker's start; 0: not measured
cdef int cal_dists[CAL_NDIST]
cal_dists = [0, 4, 8, 16, 32]        # prefetch distances tried (rows ahead)
# Sources of at most 256 KB are copied without prefetching and measure only
# the copy: every x86-64 core of the last decade has an L2 at least that big.
cdef int64_t CAL_MIN_SPAN = 1 << 18
# Sources of at most 16 MiB are read whole before the timed copies (0.1-2
# ms): batches drawn again and again from a source that fits a cache find
# it there, and where it does not fit, reading it leaves it where batches
# would find it.  Larger sources are timed as they are.
cdef int64_t CAL_WARM_SPAN = 16 << 20
# A split never pays below 64 KB of output: a few microseconds of copying,
# less than a pool worker took to wake on the machines in docs/tuning.md.
cdef int64_t PARALLEL_MIN_BYTES = 1 << 16
cdef int64_t PARALLEL_MIN_NS = -1    # _tune: split threshold (ns); -1: twice the wake time
cdef int forced_prefetch = -1        # _tune: rows ahead for every batch; -1: calibrated
cdef int forced_threads = 0          # _tune: threads for every batch; 0: calibrated
cdef int max_threads = 1             # set_num_threads (mbcore sets it at import)
# A batch keeps the GIL when releasing and taking it back (measured at
# first need) would add more than GIL_KEEP_PCT percent to its estimated
# time: the same 10% that a prefetch distance must gain to be used.
cdef int64_t cal_gil_ps = 0          # ps a GIL release and retake; 0: not measured
cdef int64_t cal_gen = 1             # bumped by _forget_calibration
cdef int64_t cal_sink = 0
cdef int64_t GIL_KEEP_PCT = 10
cdef int forced_gil = -1             # _tune: 1 keep, 0 release, -1 measured


cdef inline int ceil_log2(int64_t x) noexcept nogil:
    cdef int k = 0
    while k < 62 and (<int64_t>1 << k) < x:
        k += 1
    return k


cdef inline uint64_t cal_rand(uint64_t *s) noexcept nogil:
    """xorshift64*: row choices of a calibration (not the batch stream)."""
    s[0] ^= s[0] >> 12
    s[0] ^= s[0] << 25
    s[0] ^= s[0] >> 27
    return s[0] * 0x2545F4914F6CDD1DULL


cdef int64_t pick_distance(const int64_t *best, int nd, int64_t units,
                           int64_t *times) noexcept nogil:
    """The calibration cell from the best time (ns) of each distance
    cal_dists[0..nd) over ``units`` rows (or blocks): ps a unit << 8 | the
    distance; the times are copied to ``times`` when it is not NULL."""
    cdef int i, d = 0
    cdef int64_t ps
    if times != NULL:
        for i in range(nd):
            times[i] = best[i]
    for i in range(nd):
        if best[i] < best[d]:
            d = i
    # Prefetching is kept only when it gains 10%: rows already in a cache
    # pay for the hints and gain nothing, and smaller gains are within the
    # noise of one calibration on a busy machine.
    if best[0] * 10 <= best[d] * 11:
        d = 0
    ps = best[d] * 1000 // units
    return (ps if ps > 0 else 1) << 8 | cal_dists[d]


cdef int64_t calibrate_rows(const char *base, int64_t n, int64_t stride, int64_t block,
                            int64_t span, int64_t *times=NULL) noexcept nogil:
    """Time copies of CAL_SAMPLE random rows of ``block`` bytes, row i at
    ``base + r_i * stride`` (r_i < n), with each prefetch distance of
    cal_dists (only 0 for a source of at most CAL_MIN_SPAN bytes), fresh
    rows for every copy, CAL_ROUNDS rounds in shuffled order; returns the
    packed cell (best distance, its ps per row), 0 if memory ran out, and
    the best time (ns) of each distance into ``times`` when not NULL."""
    cdef int64_t rows = CAL_SAMPLE, best[CAL_NDIST]
    cdef int64_t *offs
    cdef char *dst
    cdef int order[CAL_NDIST]
    cdef int nd = CAL_NDIST if span > CAL_MIN_SPAN else 1
    cdef int r, i, j, d, t
    cdef int64_t k, t0, dt, ps
    cdef uint64_t s = 0x9E3779B97F4A7C15ULL ^ <uint64_t>mb_now_ns()
    if block * rows > CAL_MAX_BYTES:
        rows = max(16, CAL_MAX_BYTES // block)
    offs = <int64_t *>malloc(rows * sizeof(int64_t))
    dst = <char *>malloc(rows * block)
    if offs == NULL or dst == NULL:
        free(offs)
        free(dst)
        return 0
    memset(dst, 0, rows * block)
    if span <= CAL_WARM_SPAN:
        # The bytes the rows span (from the last row up with a negative stride).
        mb_touch(base + (stride * (n - 1) if stride < 0 else 0), span)
    for i in range(nd):
        best[i] = INT64_MAX
        order[i] = i
    for r in range(CAL_ROUNDS):
        for i in range(nd - 1, 0, -1):
            j = <int>(cal_rand(&s) % <uint64_t>(i + 1))
            t = order[i]
            order[i] = order[j]
            order[j] = t
        for i in range(nd):
            d = order[i]
            for k in range(rows):
                offs[k] = <int64_t>(cal_rand(&s) % <uint64_t>n) * stride
            t0 = mb_now_ns()
            copy_rows_of(dst, base, offs, 1, rows, block, cal_dists[d])
            dt = mb_now_ns() - t0
            if dt < best[d]:
                best[d] = dt
    free(offs)
    free(dst)
    return pick_distance(best, nd, rows, times)


cdef inline int64_t cell_for(const char *base, int64_t n, int64_t stride, int64_t block,
                             int64_t span) noexcept nogil:
    """The calibration cell of rows of ``block`` bytes from a source of
    ``span`` bytes, measured on these rows at first need."""
    cdef int64_t *c = &cal_cells[ceil_log2(span) if span < (<int64_t>1 << 62) else 62][
        min(ceil_log2(block), CAL_ROWS - 1)]
    cdef int64_t v = mb_load(c)
    if v == 0 and n > 0 and block > 0:
        v = calibrate_rows(base, n, stride, block, span)
        mb_store(c, v)
    return v


cdef int64_t calibrate_walk(const mb_plan *p, const char *src, int64_t span,
                            int64_t *times=NULL) noexcept nogil:
    """Time multi-axis walks of plan p on its own source, each with every
    prefetch distance of cal_dists (runs ahead), CAL_ROUNDS rounds in
    shuffled order, fresh random indices on every sampled axis for every
    walk, cut to at most CAL_SAMPLE runs and CAL_MAX_BYTES: the longest
    outer axis halved until it fits, a whole axis kept whole by stepping
    over it evenly, so that the walk spans the bytes a batch spans and
    jumps as a batch does; a shorter walk is timed several times over (fresh
    indices each time), so that each timing covers about CAL_SAMPLE runs;
    returns the packed cell (best distance, its ps per block), 0 if memory
    ran out, and the best time (ns) of each distance into ``times``."""
    cdef mb_plan *q = <mb_plan *>malloc(sizeof(mb_plan))
    cdef int64_t best[CAL_NDIST]
    cdef int order[CAL_NDIST]
    cdef int64_t *idx = NULL
    cdef int64_t *cur
    cdef char *dst = NULL
    cdef const char *lo = src
    cdef int64_t nidx = 0, out, blocks, k, t0, dt, ps, runs, reps, e
    cdef int r, i, j, d, t
    cdef uint64_t s = 0x9E3779B97F4A7C15ULL ^ <uint64_t>mb_now_ns()
    if q == NULL:
        return 0
    memcpy(q, p, sizeof(mb_plan))
    out = q.block * q.ax[q.nouter - 1].m          # bytes a run
    runs = max(1, min(<int64_t>CAL_SAMPLE, CAL_MAX_BYTES // max(out, 1)))
    while True:
        k = 1
        j = 0
        for i in range(q.nouter - 1):
            k *= q.ax[i].m
            if q.ax[i].m > q.ax[j].m:
                j = i
        if k <= runs or q.ax[j].m <= 1:
            break
        q.ax[j].m = (q.ax[j].m + 1) // 2
    out *= k
    reps = max(1, runs // max(k, 1))
    for i in range(q.nouter):
        if q.ax[i].stride < 0:
            lo += q.ax[i].stride * (q.ax[i].n - 1)
        if q.ax[i].sampled:
            nidx += q.ax[i].m
        elif q.ax[i].m < p.ax[i].m:
            q.ax[i].stride *= p.ax[i].n // q.ax[i].m
            q.ax[i].n = q.ax[i].m
    blocks = out // q.block if q.block > 0 else 0
    idx = <int64_t *>malloc(max(nidx * reps, 1) * sizeof(int64_t))
    dst = <char *>malloc(max(out, 1))
    if idx == NULL or dst == NULL or blocks == 0:
        free(q)
        free(idx)
        free(dst)
        return 0
    memset(dst, 0, out)
    if span <= CAL_WARM_SPAN:
        mb_touch(lo, span)
    for i in range(CAL_NDIST):
        best[i] = INT64_MAX
        order[i] = i
    for r in range(-CAL_WARM_ROUNDS, CAL_ROUNDS):
        for i in range(CAL_NDIST - 1, 0, -1):
            j = <int>(cal_rand(&s) % <uint64_t>(i + 1))
            t = order[i]
            order[i] = order[j]
            order[j] = t
        for i in range(CAL_NDIST):
            d = order[i]
            cur = idx
            for e in range(reps):
                for t in range(q.nouter):
                    if q.ax[t].sampled:
                        for k in range(q.ax[t].m):
                            cur[k] = <int64_t>(cal_rand(&s) % <uint64_t>q.ax[t].n)
                        cur += q.ax[t].m
            t0 = mb_now_ns()
            for e in range(reps):
                gather_nd(q, src, dst, NULL, 0, idx + e * nidx, cal_dists[d])
            dt = mb_now_ns() - t0
            if dt < best[d] and r >= 0:
                best[d] = dt
    free(q)
    free(idx)
    free(dst)
    return pick_distance(best, CAL_NDIST, blocks * reps, times)


cdef int64_t walk_cell(const mb_plan *p, const char *src, int64_t span) noexcept nogil:
    """The calibration cell of a multi-axis walk: (span, run) class,
    measured on this plan's walks at first need."""
    cdef const mb_axis *a = &p.ax[p.nouter - 1]
    cdef int64_t run = p.block * max(a.m, 1)
    cdef int k, jumps = 0
    for k in range(p.nouter):
        jumps += p.ax[k].sampled != 0
    cdef int64_t *c = &walk_cells[ceil_log2(span) if span < (<int64_t>1 << 62) else 62][
        min(ceil_log2(run), CAL_ROWS - 1)][min(max(jumps, 1), WALK_KINDS) - 1]
    cdef int64_t v = mb_load(c)
    if v == 0 and p.block > 0:
        v = calibrate_walk(p, src, span)
        mb_store(c, v)
    return v


cdef int64_t draw_ps() noexcept nogil:
    """ps to draw one index at the current vector level (fill_bounded of
    2048 indices, best of 5), measured at first need."""
    cdef int level = mb_simd_get()
    cdef int64_t v = mb_load(&cal_draw_ps[level])
    cdef int64_t buf[2048]
    cdef philox_pos st
    cdef int64_t t0, dt, best = INT64_MAX
    cdef int r
    if v != 0:
        return v
    pos_init(&st, 1, 2, 3, 0)
    for r in range(5):
        t0 = mb_now_ns()
        fill_bounded(&st, <uint64_t>(r * 2048), 1000003, buf, 2048)
        dt = mb_now_ns() - t0
        best = min(best, dt)
    v = max(1, best * 1000 // 2048)
    mb_store(&cal_draw_ps[level], v)
    return v


# The wake time is measured with the worker asleep for 50 us first (0.3 ms
# in all, so that the first large batch hardly waits for it).  After longer
# idling the wake takes longer (an idle virtual CPU halts: 1.2x after 1 ms,
# 2x after 20 ms, docs/tuning.md), but the wake time only bounds which thread
# counts are tried; the batches' own times choose among them.
cdef int WAKE_GAP_US = 50


cdef int64_t wake_ns() noexcept nogil:
    """How long a sleeping pool worker takes to start its chunk (median of 5
    tries, WAKE_GAP_US apart), measured at first need; 0 if the pool is busy or
    has no worker (then no batch is split until it is measured)."""
    cdef int64_t v = mb_load(&cal_wake_ns)
    if v == 0:
        v = mb_pool_wake_ns(5, WAKE_GAP_US)
        if v <= 0:
            return 0
        mb_store(&cal_wake_ns, v)
    return v


cdef inline int64_t plan_span(const mb_plan *p) noexcept nogil:
    """Bytes the plan's source spans (its rows' extent)."""
    cdef int64_t span = p.block
    cdef int k
    for k in range(p.nouter):
        span += (p.ax[k].stride if p.ax[k].stride >= 0 else -p.ax[k].stride) * (p.ax[k].n - 1)
    return span


cdef inline int64_t row_cell(const mb_plan *p, const char *src, int64_t span) noexcept nogil:
    """Cell of a plan's copies: its rows for a single-axis plan; for a
    multi-axis walk, its blocks within one row of the last outer axis (the
    blocks of a run are read from one such row)."""
    cdef const mb_axis *a
    if p.nouter == 1:
        return cell_for(src, p.ax[0].n, p.ax[0].stride, p.block, span)
    a = &p.ax[p.nouter - 1]
    return cell_for(src, a.n, a.stride,
                    p.block, p.block + (a.stride if a.stride >= 0 else -a.stride) * (a.n - 1))


cdef int prefetch_for(const mb_plan *p, const char *src) noexcept nogil:
    """Rows (runs) ahead that a batch of plan p prefetches: forced by
    _tune, 0 for sources of at most CAL_MIN_SPAN, else the calibrated best
    for its cell (rows for a single-axis plan, walks for a multi-axis one)."""
    if forced_prefetch >= 0:
        return forced_prefetch
    if p.prefetch >= 0:
        return p.prefetch
    if p.nouter > 1:
        return <int>(walk_cell(p, src, plan_span(p)) & 255)
    return <int>(row_cell(p, src, plan_span(p)) & 255)


# Thread counts are chosen by timing real batches.  Batches are grouped by
# their estimated one-thread time (calibrated costs of an index drawn and a
# row copied), in classes of a power of two (ns), multi-axis walks apart.
# In a class, the first batches try each candidate count (1, 2, 4, ... up
# to the limit) TT_TRIES times; from then on the class uses the count whose
# mean time (per ns of estimate) is lowest, and every TT_RETRY-th batch
# retries one candidate in turn.  The candidates go up to one thread per
# wake time of work (a worker's share must at least pay for its wake-up),
# and a batch estimated under twice the wake time is never split.
cdef enum:
    TT_CLASSES = 96        # 48 estimate classes, single-axis and multi-axis apart
    TT_CANDS = 12          # candidate k: min(2**k, limit) threads
    TT_TRIES = 3
    TT_RETRY = 64          # then every 64th batch of a class retries a candidate

cdef int64_t tt_best[TT_CLASSES][TT_CANDS]    # mean ns * 1024 / estimate
cdef int64_t tt_tries[TT_CLASSES][TT_CANDS]
cdef int64_t tt_seen[TT_CLASSES]               # batches of the class since decided


cdef struct mb_threads:
    int n                  # threads for this batch
    int cls                # its class, -1 when the batch is not timed
    int cand               # the candidate it tries
    int64_t est            # estimated one-thread ns


cdef void threads_decide(const mb_plan *p, const char *src, int64_t nbytes, int cap,
                         mb_threads *r) noexcept nogil:
    """Threads (1 to cap) for one batch of plan p with nbytes of output
    (several arrays' for draw_group), into r.n; r.cls >= 0 asks the caller
    to time the batch and pass it to threads_record."""
    cdef int64_t wake, thr, rows, est, v, best = 0
    cdef int k, top, c, pick = 0
    r.n = 1
    r.cls = -1
    if cap <= 1 or not p.ax[0].sampled or p.ax[0].m < 16:
        return
    if forced_threads > 0:
        r.n = min(forced_threads, cap)
        return
    if nbytes < PARALLEL_MIN_BYTES and PARALLEL_MIN_NS < 0:
        return
    if PARALLEL_MIN_NS >= 0:
        thr = PARALLEL_MIN_NS
    else:
        wake = wake_ns()
        if wake <= 0:
            return
        thr = 2 * wake
    rows = nbytes // p.block if p.block > 0 else 0
    est = (p.nidx * draw_ps() + rows * (row_cell(p, src, plan_span(p)) >> 8)) // 1000
    r.est = est
    if est < thr:
        return
    if thr <= 0 or PARALLEL_MIN_NS >= 0:
        # A threshold set by _tune: the model alone, nothing timed.
        r.n = cap if thr <= 0 else <int>max(2, min(2 * est // thr, <int64_t>cap))
        return
    # Candidates 0..top: 1, 2, 4, ... threads, the last min(2**top, limit).
    top = ceil_log2(min(2 * est // thr, <int64_t>cap))
    top = min(top, TT_CANDS - 1)
    c = min(ceil_log2(est), TT_CLASSES // 2 - 1) + (TT_CLASSES // 2 if p.nouter > 1 else 0)
    for k in range(top + 1):
        if mb_load(&tt_tries[c][k]) < TT_TRIES:
            r.cls = c
            r.cand = k
            r.n = <int>min(<int64_t>1 << k, <int64_t>cap)
            return
        v = mb_load(&tt_best[c][k])
        if k == 0 or v < best:
            best = v
            pick = k
    # Retry the candidates in turn now and then: a count whose tries met a
    # burst of load gets another chance, and the means follow the load.
    v = mb_load(&tt_seen[c]) + 1
    mb_store(&tt_seen[c], v)
    if v % TT_RETRY == 0:
        pick = <int>((v // TT_RETRY) % (top + 1))
        r.cls = c
        r.cand = pick
    r.n = <int>min(<int64_t>1 << pick, <int64_t>cap)


cdef void threads_record(const mb_threads *r, int64_t ns) noexcept nogil:
    """Note the time of a batch that tried candidate r.cand of class r.cls:
    a running mean (the last four tries weigh most), not the minimum: a
    split's best case (the other cores free) is far from its usual one on
    a busy machine."""
    cdef int64_t v = ns * 1024 // max(r.est, 1)
    cdef int64_t n = mb_load(&tt_tries[r.cls][r.cand])
    cdef int64_t old = mb_load(&tt_best[r.cls][r.cand])
    if n > 0:
        v = old + (v - old) // min(n + 1, 4)
    mb_store(&tt_best[r.cls][r.cand], max(v, 1))
    mb_store(&tt_tries[r.cls][r.cand], n + 1)


cdef inline int threads_for(const mb_plan *p, int64_t nbytes, int64_t span) noexcept nogil:
    """The most threads a batch of plan p may use: set_num_threads' limit
    (threads_decide picks the number in the kernel, where the source is at
    hand to calibrate on)."""
    return max_threads


cdef inline int auto_prefetch(int64_t span) noexcept nogil:
    """The prefetch distance fixed when a plan is built, -1 for one
    calibrated at its first batch (prefetch_for): sources within
    CAL_MIN_SPAN are in the L2 and not prefetched."""
    if span <= CAL_MIN_SPAN:
        return 0
    return -1


cdef int64_t gil_ps():
    """ps to release the GIL and take it back (64 round trips, best of 9),
    measured at first need; called with the GIL held."""
    cdef int64_t v = mb_load(&cal_gil_ps)
    cdef int64_t t0, dt, best = INT64_MAX
    cdef int r, i
    if v != 0:
        return v
    for r in range(9):
        t0 = mb_now_ns()
        for i in range(64):
            with nogil:
                mb_store(&cal_sink, i)
        dt = mb_now_ns() - t0
        best = min(best, dt)
    v = max(1, best * 1000 // 64)
    mb_store(&cal_gil_ps, v)
    return v


cdef int64_t batch_ps(const mb_plan *p, const char *src, int64_t nbytes) noexcept nogil:
    """A batch's estimated one-thread time (ps): its indices drawn and its
    rows (blocks of a walk) copied, at the calibrated costs."""
    cdef int64_t rows = nbytes // p.block if p.block > 0 else 0
    cdef int64_t row
    if p.nouter > 1 and p.prefetch < 0:
        row = walk_cell(p, src, plan_span(p)) >> 8
    else:
        row = row_cell(p, src, plan_span(p)) >> 8
    return p.nidx * draw_ps() + rows * row


cdef bint keeps_gil(int64_t est_ps):
    """Whether a batch estimated at est_ps keeps the GIL: forced by _tune,
    else when a release and retake would add more than GIL_KEEP_PCT percent
    to its time.  Called with the GIL held."""
    if forced_gil >= 0:
        return forced_gil
    return gil_ps() * 100 > est_ps * GIL_KEEP_PCT


cdef struct mb_axis:
    int64_t n            # source length
    int64_t m            # output length: batch size if sampled, else n
    int64_t stride       # source byte stride (any sign, may be 0)
    uint64_t key0        # Philox key of this axis' stream
    uint64_t key1
    uint64_t sid         # stream id: the axis position
    int sampled
    int replace
    int epochs           # EPOCHS_OFF, or the epoch mode (_permute.pxd)
    uint64_t perm_digit  # epochs: mb_perm_digit(n), made once
    int64_t gm           # a shard's global batch: this axis draws positions
    int64_t off          # [off, off + m) of batches of gm (else gm = m, off 0)


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
                    const int64_t *idx, int prefetch) noexcept nogil:
    """Outer-product gather (``src[np.ix_(...)]``) into C-contiguous dst.

    Axes ``0 .. nouter-1`` are walked with an odometer; axis k reads
    ``src + idx_k[i] * stride_k`` when sampled, ``src + i * stride_k`` when
    whole.  The trailing axes form one contiguous block of ``p.block`` bytes.
    Axis 0 takes its indices from ``idx0`` (m0 of them) when idx0 is not NULL;
    the other sampled axes take theirs, in axis order, from ``idx``.
    O(output bytes).

    With ``prefetch`` (the batch's choice, calibrated per class: rows
    ahead for a single-axis plan, runs ahead for a walk), the source lines
    of the run ``prefetch`` runs ahead (at most MB_PREFETCH_LINES of them)
    are prefetched; a second odometer walks ahead of the first.
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
        copy_rows_of(dst, src, ix[0], p.ax[0].stride, m[0], p.block, prefetch)
        return
    o.base[0] = 0
    for k in range(last):
        o.pos[k] = 0
        o.base[k + 1] = o.base[k] + (ix[k][0] if ix[k] != NULL else 0) * p.ax[k].stride
    if prefetch:
        # Bytes a run reads, from its row's base: [lo, hi + block).
        for i in range(m[last]):
            off = (ix[last][i] if ix[last] != NULL else i) * p.ax[last].stride
            if i == 0 or off < lo:
                lo = off
            if i == 0 or off > hi:
                hi = off
        more = True
        ahead = o
        i = 0
        while more and i < prefetch:        # the first runs, then one a run
            prefetch_block(src + ahead.base[last] + lo, hi - lo + p.block)
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
    cdef philox_pos st
    for k in range(p.ndim):
        a = &p.ax[k]
        if not a.sampled:
            continue
        if a.epochs:
            fill_epoch(a.key0, a.key1, a.sid, a.epochs, a.n, a.perm_digit, a.gm, step,
                       <uint64_t>a.off, idx, a.m, 0, 0)
        elif a.replace:
            pos_init(&st, a.key0, a.key1, step, a.sid)     # sample_replace from off
            fill_bounded(&st, <uint64_t>a.off, <uint64_t>a.n, idx, a.m)
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
                or x.m != y.m or x.replace != y.replace or x.epochs != y.epochs
                or x.gm != y.gm or x.off != y.off):
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
    int prefetch           # rows (runs) ahead, prefetch_for(p[0])
    int64_t *scratch       # index scratch of a plan that is not fused


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
    cdef epoch_cursor ec
    cdef int64_t done = 0, cnt
    cdef int i
    if g.idx != NULL:
        for i in range(g.k):
            p = g.p[i]
            if a.sampled:
                gather_nd(p, g.src[i], g.dst[i] + g.start * p.row_out, g.idx + g.start,
                          g.count, g.idx + a.m, g.prefetch)
            else:
                gather_nd(p, g.src[i], g.dst[i], NULL, 0, g.idx, g.prefetch)
        return
    if a.epochs:    # one permutation set-up a job, not a chunk
        epoch_start(&ec, a.key0, a.key1, a.sid, a.epochs, a.n, a.perm_digit, a.gm,
                    g.step, <uint64_t>(a.off + g.start), 0, 0)
    else:
        pos_init(&st, a.key0, a.key1, g.step, a.sid)
    while done < g.count:
        cnt = g.count - done
        if cnt > MB_CHUNK:
            cnt = MB_CHUNK
        if a.epochs:
            epoch_fill(&ec, chunk, cnt)
        else:
            fill_bounded(&st, <uint64_t>(a.off + g.start + done), <uint64_t>a.n, chunk, cnt)
        for i in range(g.k):
            p = g.p[i]
            gather_nd(p, g.src[i], g.dst[i] + (g.start + done) * p.row_out, chunk, cnt, NULL,
                      g.prefetch)
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


# A split batch is cut into SHARE_CHUNKS chunks a thread, of at least
# SHARE_MIN_CHUNK positions: small chunks, so that the caller, which claims
# whatever is left, waits at the end only for the chunk a worker holds (a
# worker that is descheduled, or woke late, holds up little).
cdef int64_t SHARE_CHUNKS = 16
cdef int64_t SHARE_MIN_CHUNK = 64


cdef void draw_gather_k(int k, const mb_plan **p, const char **src, char **dst,
                        uint64_t step, int64_t *scratch, int nthreads) noexcept nogil:
    """Draw batch ``step`` of k arrays whose plans share their streams
    (same_streams with p[0]) and gather each into its dst.

    ``scratch`` holds ``plan_scratch_size(p[0])`` int64 (may be NULL when
    that is 0).  Fused plans (only axis 0 sampled, with replacement) draw as
    they copy; others draw every index into scratch first; either way the
    indices are drawn once for all k arrays.  The prefetch distance is
    prefetch_for(p[0]); the batch runs on threads_decide (at most
    ``nthreads``) threads: with more than one, it is cut along axis 0 into
    SHARE_CHUNKS chunks a thread that this thread and pool workers claim in
    turn (mb_pool_run; each draw is addressable, so a fused chunk draws its
    own indices, positions [c * chunk, (c + 1) * chunk) of the stream).
    """
    cdef gather_job job
    cdef const mb_axis *a = &p[0].ax[0]
    cdef int64_t nbytes = 0, t0 = 0
    cdef int i
    cdef mb_threads tr
    job.k = k
    job.p = p
    job.src = src
    job.dst = dst
    job.idx = NULL
    job.step = step
    job.start = 0
    job.count = a.m
    job.prefetch = prefetch_for(p[0], src[0])
    job.scratch = scratch
    tr.n = 1
    tr.cls = -1
    if nthreads > 1 and a.sampled:
        for i in range(k):
            nbytes += p[i].row_out * a.m
        threads_decide(p[0], src[0], nbytes, nthreads, &tr)
    nthreads = tr.n
    if tr.cls >= 0:
        t0 = mb_now_ns()
    i = run_batch(&job, nthreads)
    if tr.cls >= 0 and i == nthreads:     # not when the pool was busy
        threads_record(&tr, mb_now_ns() - t0)


cdef int run_batch(gather_job *job, int nthreads) noexcept nogil:
    """Run a batch's job on up to nthreads threads (see draw_gather_k);
    returns the threads it was given (1 when the pool was in use)."""
    cdef chunked_job shared
    cdef const mb_axis *a = &job.p[0].ax[0]
    cdef const mb_plan *p0 = job.p[0]
    if not p0.fused:
        draw_plan_indices(p0, job.step, job.scratch, job.scratch + p0.nidx)
        job.idx = job.scratch
    # Chunks of a multiple of 8 positions (whole Philox blocks, so a fused
    # chunk's draws start on the vector path); at least two, or no helper.
    if nthreads > 1 and a.sampled:
        shared.chunk = (a.m + SHARE_CHUNKS * nthreads - 1) // (SHARE_CHUNKS * nthreads)
        shared.chunk = max(SHARE_MIN_CHUNK, (shared.chunk + 7) // 8 * 8)
        if a.m > shared.chunk:
            shared.job = job[0]
            return 1 + mb_pool_run(run_chunk, &shared, (a.m + shared.chunk - 1) // shared.chunk,
                                   nthreads)
    run_job(job)
    return 1


cdef api int draw_gather(const mb_plan *p, const char *src, char *dst,
                         uint64_t step, int64_t *scratch, int nthreads) noexcept nogil:
    """Draw batch ``step`` of the plan's streams and gather it into dst:
    ``draw_gather_k`` for one array.  Returns 0."""
    draw_gather_k(1, &p, &src, &dst, step, scratch, nthreads)
    return 0


def _draw_gather_args(Sampler s not None):
    """_draw_gather_args(sampler) -> (plan, scratch, threads)

    For compiled callers of the ``draw_gather`` C API (the PyTensor
    adapter's Numba draw): the address of this Sampler's plan, valid while
    the Sampler lives; the int64 entries of index scratch a batch needs (0:
    none, scratch may be NULL); the address of the C int that
    ``set_num_threads`` sets, the ``nthreads`` a batch passes.
    """
    return (<size_t>&s.plan, plan_scratch_size(&s.plan), <size_t>&max_threads)


# ---------------------------------------------------------------- wrapper

def _simd(level=None):
    """_simd(level=None): this module's vector level for drawing (see
    ``_philox.simd_switch``); for tests and benchmarks."""
    return simd_switch(level)


def _tune(parallel_min_bytes=None, prefetch=None, parallel_min_ns=None, threads=None,
          gil=None):
    """_tune(parallel_min_bytes=None, prefetch=None, parallel_min_ns=None, threads=None,
             gil=None)

    For tests and benchmarks, read on every batch: the output size (bytes)
    below which a batch is never split; the estimated one-thread time (ns)
    from which it is (-1: twice the measured wake time of a pool worker);
    the prefetch distance ("auto": calibrated, "off": 0, "on": 8 rows
    (runs of a multi-axis walk) ahead, or an int: that many ahead); the thread count (0:
    calibrated; n: n threads for every batch of 16 rows or more, within
    set_num_threads' limit); the GIL ("auto": measured, "keep": held
    through every batch, "release": released for every batch).  None
    leaves a setting alone.  Returns the old
    settings, in an order that ``_tune(*old)`` restores.
    """
    global PARALLEL_MIN_BYTES, PARALLEL_MIN_NS, forced_prefetch, forced_threads, forced_gil
    cdef dict modes = {"auto": -1, "off": 0, "on": 8}
    cdef dict gil_modes = {"auto": -1, "release": 0, "keep": 1}
    old_prefetch = ([k for k, v in modes.items() if v == forced_prefetch] or [forced_prefetch])[0]
    old_gil = [k for k, v in gil_modes.items() if v == forced_gil][0]
    old = (PARALLEL_MIN_BYTES, old_prefetch, PARALLEL_MIN_NS, forced_threads, old_gil)
    if gil is not None and gil not in gil_modes:
        raise ValueError(f"gil must be one of {sorted(gil_modes)}, got {gil!r}")
    if prefetch is not None and prefetch not in modes and not (
            type(prefetch) is int and 0 <= prefetch <= 1024):
        raise ValueError(f"prefetch must be one of {sorted(modes)} or an int in [0, 1024], "
                         f"got {prefetch!r}")
    if threads is not None and not (type(threads) is int and 0 <= threads <= MB_POOL_MAX + 1):
        raise ValueError(f"threads must be an int in [0, {MB_POOL_MAX + 1}], got {threads!r}")
    if parallel_min_bytes is not None:
        PARALLEL_MIN_BYTES = parallel_min_bytes
    if parallel_min_ns is not None:
        PARALLEL_MIN_NS = parallel_min_ns
    if prefetch is not None:
        forced_prefetch = modes[prefetch] if isinstance(prefetch, str) else prefetch
    if threads is not None:
        forced_threads = threads
    if gil is not None:
        forced_gil = gil_modes[gil]
    return old


def _prefetch_ahead(Sampler s not None):
    """_prefetch_ahead(sampler)

    For tests: rows (runs) between a prefetch and its copy in a batch of
    this Sampler, 0 when it does not prefetch (calibrating first if its
    cell is not measured yet).
    """
    return prefetch_for(&s.plan, <const char *>cnp.PyArray_DATA(s.data))


def _batch_threads(Sampler s not None):
    """_batch_threads(sampler)

    For tests: the threads a batch of this Sampler runs on now (measuring
    what the choice needs first).
    """
    cdef int cap = threads_for(&s.plan, s.out_bytes, s.span)
    cdef const char *src = <const char *>cnp.PyArray_DATA(s.data)
    if cap <= 1 or not s.plan.ax[0].sampled:
        return 1
    cdef mb_threads tr
    with nogil:
        threads_decide(&s.plan, src, s.out_bytes, cap, &tr)
    return tr.n


def _keeps_gil(Sampler s not None):
    """_keeps_gil(sampler)

    For tests: whether a batch of this Sampler runs with the GIL held
    (measuring what the choice needs first).
    """
    if s.gil_gen != cal_gen:
        s._estimate()
    return bool(forced_gil == 1 or (forced_gil < 0 and s.keep_gil))


def _dispatch_info():
    """_dispatch_info()

    What the dispatcher has measured in this process: ``wake_ns`` (a pool
    worker's wake time, None if not measured), ``draw_ps`` (ps an index, per
    vector level measured), ``gil_ps`` (ps to release the GIL and take it
    back, None if not measured), ``cells`` ({(span class, row class): (rows ahead,
    ps a row)}, classes as log2 of bytes), ``walk_cells`` (the same for
    multi-axis walks: {(span class, run class, sampled outer axes): (runs
    ahead, ps a block)}),
    ``workers`` (pool threads started) and ``max_threads``.
    """
    cells, walks = {}, {}
    for i in range(CAL_SPANS):
        for j in range(CAL_ROWS):
            v = mb_load(&cal_cells[i][j])
            if v:
                cells[(i, j)] = (int(v & 255), int(v >> 8))
            for k in range(WALK_KINDS):
                v = mb_load(&walk_cells[i][j][k])
                if v:
                    walks[(i, j, k + 1)] = (int(v & 255), int(v >> 8))
    names = ["scalar", "avx2", "avx512"]
    return {"wake_ns": int(cal_wake_ns) or None, "gil_ps": int(cal_gil_ps) or None,
            "draw_ps": {names[i]: int(cal_draw_ps[i]) for i in range(3) if cal_draw_ps[i]},
            "cells": cells, "walk_cells": walks, "workers": mb_pool_size(), "max_threads": max_threads}


def _forget_calibration():
    """_forget_calibration()

    For tests and benchmarks: drop every measurement and thread choice, so
    that the next batches measure again.
    """
    global cal_wake_ns, cal_gen
    cdef int i, j, k
    mb_store(&cal_gil_ps, 0)
    cal_gen += 1
    for i in range(CAL_SPANS):
        for j in range(CAL_ROWS):
            mb_store(&cal_cells[i][j], 0)
            for k in range(WALK_KINDS):
                mb_store(&walk_cells[i][j][k], 0)
    for i in range(3):
        mb_store(&cal_draw_ps[i], 0)
    mb_store(&cal_wake_ns, 0)
    for i in range(TT_CLASSES):
        for j in range(TT_CANDS):
            mb_store(&tt_best[i][j], 0)
            mb_store(&tt_tries[i][j], 0)
        mb_store(&tt_seen[i], 0)


def _measure_wake(int tries, int gap_us):
    """_measure_wake(tries, gap_us): a fresh measurement of wake_ns (for
    benchmarks), ns; None when no worker could be used."""
    cdef int64_t v
    with nogil:
        v = mb_pool_wake_ns(tries, gap_us)
    return v if v > 0 else None


def _calibration_times(Sampler s not None):
    """_calibration_times(sampler): {rows (runs) ahead: best ns of a timed
    gather} of a fresh calibration on this Sampler's rows, or its walks for
    a multi-axis Sampler (for benchmarks and docs/tuning.md); the cells are
    left as they are."""
    cdef int64_t times[CAL_NDIST]
    cdef const char *src = <const char *>cnp.PyArray_DATA(s.data)
    cdef int64_t span = plan_span(&s.plan)
    cdef int nd = CAL_NDIST if span > CAL_MIN_SPAN else 1
    if s.plan.nouter > 1:
        nd = CAL_NDIST
        with nogil:
            calibrate_walk(&s.plan, src, span, times)
        return {cal_dists[i]: times[i] for i in range(nd)}
    with nogil:
        calibrate_rows(src, s.plan.ax[0].n, s.plan.ax[0].stride, s.plan.block, span, times)
    return {cal_dists[i]: times[i] for i in range(nd)}


def _pool_workers():
    """_pool_workers(): worker threads the pool has started in this process."""
    return mb_pool_size()


MAX_THREADS = MB_POOL_MAX + 1


def get_num_threads():
    """get_num_threads(): the most threads one batch may use."""
    return max_threads


def set_num_threads(int n):
    """set_num_threads(n)

    Use at most n threads (1 to MAX_THREADS) for one batch: the caller and
    n - 1 pool workers.  Returns the old value.  ``mbcore.set_num_threads``
    is the public entry point.
    """
    global max_threads
    if n < 1 or n > MB_POOL_MAX + 1:
        raise ValueError(f"n must be 1 to {MB_POOL_MAX + 1}, got {n}")
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
    """Sampler(data, sizes, keys, replace, epochs=0, shard=None)

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
    epochs : int
        0: draw as ``replace`` says.  Else every sampled axis draws from its
        epoch stream (``_permute.pxd``), in mode 1 (wrap), 2 (drop) or 3
        (short); ``replace`` must be False, and modes 2 and 3 need each
        batch size <= its axis' length.
    shard : (int, int) or None
        ``(rank, world)``: the first sampled axis draws positions
        ``[rank * b / world, (rank + 1) * b / world)`` of each batch of
        ``b`` (its size in ``sizes``, which world must divide); needs
        ``replace`` or ``epochs``.

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

    def __dealloc__(self):
        PyMem_RawFree(self.scratch_buf)

    def __cinit__(self, cnp.ndarray data not None, sizes, keys, bint replace, int epochs=0,
                  shard=None):
        cdef int nd = cnp.PyArray_NDIM(data)
        cdef int k
        cdef int64_t expected, isz = cnp.PyArray_ITEMSIZE(data)
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
        if epochs and (replace or not EPOCHS_OFF < epochs <= EPOCHS_SHORT):
            raise ValueError(f"epochs must be 0, or 1 to 3 with replace=False, got "
                             f"epochs={epochs}, replace={replace}")
        self.replace = replace
        self.epochs = epochs
        self.shard = None if shard is None else (int(shard[0]), int(shard[1]))
        if self.shard is not None and (self.shard[1] < 1 or not 0 <= self.shard[0] < self.shard[1]
                                       or (not replace and not epochs)):
            raise ValueError(f"shard must be (rank, world) with 0 <= rank < world, and "
                             f"replace or epochs, got {shard!r}")
        first = True
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
            a.epochs = EPOCHS_OFF
            a.perm_digit = 0
            a.off = 0
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
                a.epochs = epochs
                # Epochs: "wrap" takes any batch size >= 1 (a batch may span
                # epochs), "drop" and "short" at most the axis' length.
                if a.n <= 0 or a.m < 0 or (epochs and a.m == 0) or (
                        not replace and a.m > a.n and epochs != EPOCHS_WRAP):
                    raise ValueError(f"cannot sample {a.m} of {a.n} along axis {k}")
                if epochs:
                    a.perm_digit = mb_perm_digit(<uint64_t>a.n)
                a.gm = a.m
                if first and self.shard is not None:
                    # Shard (rank, world) of the first sampled axis: positions
                    # [rank * m / world, (rank + 1) * m / world) of each batch.
                    if a.m % self.shard[1]:
                        raise ValueError(f"shard world {self.shard[1]} must divide the batch "
                                         f"size {a.m} of axis {k}")
                    a.m = a.gm // self.shard[1]
                    a.off = self.shard[0] * a.m
                first = False
                self.plan.nidx += a.m
                if not replace and not epochs:
                    self.plan.nwork = max(self.plan.nwork, noreplace_work_size(a.n, a.m))
            else:
                a.m = a.n
                a.gm = a.n
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
        self.plan.fused = self.plan.ax[0].sampled and (replace or epochs) and \
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
        self.plan.prefetch = auto_prefetch(span)
        self.out_bytes = isz
        for k in range(nd):
            self.out_bytes *= self.out_shape[k]
        self.gil_gen = 0

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

    cdef int _estimate(self) except -1:
        """Estimate a batch's time (calibrating at first need) and decide
        whether batches keep the GIL."""
        cdef const char *src = <const char *>cnp.PyArray_DATA(self.data)
        cdef int64_t est
        with nogil:
            est = batch_ps(&self.plan, src, self.out_bytes)
        self.est_ps = est
        self.keep_gil = gil_ps() * 100 > est * GIL_KEEP_PCT
        self.gil_gen = cal_gen
        return 0

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
        if self.gil_gen != cal_gen:
            self._estimate()
        if (forced_gil < 0 and self.keep_gil) or forced_gil == 1:
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

    No Python code runs per batch: a batch of one row (1e5 x 10) took
    366-373 ns with ``next(mb)`` against 453-464 ns behind a Python-level
    ``__next__`` (``return self._sampler.next()``), both in shuffled order in
    one process on a 2-vCPU AMD EPYC (Zen 4) VM.  ``Minibatch``, a Python
    subclass, reaches this ``__next__`` through CPython's generic slot (a
    lookup by name), which cost 316-322 against 297-298 ns for a bare
    BatchIterator at one row.
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
    cdef int64_t lo = 0, hi = 0, v, n, est
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
    cdef int prefetch = auto_prefetch(cnp.PyArray_NBYTES(src))
    if row == 0 or m == 0:
        return
    if forced_prefetch >= 0:
        prefetch = forced_prefetch
    elif prefetch < 0:
        prefetch = <int>(cell_for(s, n, row, row, cnp.PyArray_NBYTES(src)) & 255)
    with nogil:
        est = m * (cell_for(s, n, row, row, cnp.PyArray_NBYTES(src)) >> 8)
    if keeps_gil(est):
        copy_rows_of(d, s, ip, row, m, row, prefetch)
    else:
        with nogil:
            copy_rows_of(d, s, ip, row, m, row, prefetch)
