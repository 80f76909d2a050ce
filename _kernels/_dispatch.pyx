# cython: language_level=3
"""The dispatcher: for each batch, how far ahead it prefetches, which loop
copies its rows of 16 to 272 bytes (16-byte moves or memcpy), how many
threads it runs on and whether it keeps the GIL.

Every choice is measured on the machine the batch runs on (at first need,
once per process), or is a rule with its reason; docs/tuning.md has the
method and the tables that chose each rule, with the machines named.  The
state (``_dispatch.pxd``) lives here alone: the batch runner
(``_gather.pyx``) asks these functions, the test hooks (``_hooks.pyx``)
read and force the state.

Calibration cells: one per (source span, row size) class, both rounded up
to a power of two, except that rows of 16 to 272 bytes have a cell per
size (short_cells: the copy loop measured for them holds for that size).
A cell holds the prefetch distance that copied random rows of that class
fastest, for rows of 16 to 272 bytes the copy loop that did (16-byte moves
or memcpy, CELL_MOVES), and the time per row, packed as (ps per row) << 8
| CELL_MOVES if moves | distance; 0 while not measured.  Multi-axis walks
(gather_nd over several outer axes) have cells of their own, per (source
span, run size) class, a run being the blocks of one row of the last outer
axis, and per number of sampled axes the walk jumps along: walks of one
class that jump differently gain differently (on a 10x20x30x40x50 array,
[2, ..., 10] gains nothing from prefetching, and [2, None, 20, ..., 10]
runs 2.5-3x faster 32 runs ahead: one cell for both picked "none").
"""
from libc.string cimport memcpy, memset
from libc.stdlib cimport malloc, free
from libc.stdint cimport uint64_t, int64_t, INT64_MAX

from _philox cimport philox_pos, pos_init, fill_bounded, mb_simd_get
from mbcore._kernels._copy cimport copy_rows_of, short_rows, MB_SHORT_MIN, MB_SHORT_MAX
from mbcore._kernels._plan cimport mb_axis, mb_plan, plan_span, gather_nd
from mbcore._kernels._pool cimport pool_wake_ns

cdef extern from *:
    int __builtin_clzll(unsigned long long x) noexcept nogil

cdef extern from "mb_measure.h":
    int64_t mb_now_ns() noexcept nogil
    int64_t mb_load(const int64_t *p) noexcept nogil
    void mb_store(int64_t *p, int64_t v) noexcept nogil
    void mb_touch(const char *p, int64_t bytes) noexcept nogil


cdef enum:
    CAL_SAMPLE = 512        # rows copied per timed gather
    CAL_ROUNDS = 9          # shuffled rounds; the minimum of each is kept
    CAL_MAX_BYTES = 1 << 18 # bytes copied per timed gather, at most
    CAL_WARM_ROUNDS = 9     # walks: untimed rounds first
    # Sources of at most 16 MiB are read whole before the timed copies (0.1-2
    # ms): batches drawn again and again from a source that fits a cache find
    # it there, and where it does not fit, reading it leaves it where batches
    # would find it.  Larger sources are timed as they are.
    CAL_WARM_SPAN = 16 << 20

if CAL_SHORT != MB_SHORT_MAX - MB_SHORT_MIN + 1:
    raise ImportError(f"CAL_SHORT ({CAL_SHORT}) must count the sizes of short rows, "
                      f"{MB_SHORT_MIN} to {MB_SHORT_MAX} bytes")

cal_wake_ns = 0
cal_gil_ps = 0
cal_gen = 1
cal_dists[:] = [0, 4, 8, 16, 32]
cdef int64_t cal_sink = 0            # what gil_ps' nogil blocks write

max_threads = 1
# A split never pays below 64 KB of output: a few microseconds of copying,
# less than a pool worker took to wake on the machines in docs/tuning.md.
PARALLEL_MIN_BYTES = 1 << 16
PARALLEL_MIN_NS = -1
forced_prefetch = -1
forced_threads = 0
forced_gil = -1
forced_moves = -1


cdef inline int ceil_log2(int64_t x) noexcept nogil:
    """The least k <= 62 with 2**k >= x (0 for x <= 1)."""
    if x <= 1:
        return 0
    return min(64 - __builtin_clzll(<unsigned long long>(x - 1)), 62)


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
                            int64_t span, int64_t *times) noexcept nogil:
    """Time copies of CAL_SAMPLE random rows of ``block`` bytes, row i at
    ``base + r_i * stride`` (r_i < n), with each prefetch distance of
    cal_dists (only 0 for a source of at most CAL_MIN_SPAN bytes) and, for
    rows of 16 to 272 bytes, with each copy loop (16-byte moves, memcpy),
    fresh rows for every copy, CAL_ROUNDS rounds in shuffled order; returns
    the packed cell (best distance, the loop, its ps per row), 0 if memory
    ran out, and the best time (ns) of each distance with the chosen loop
    into ``times`` when not NULL."""
    cdef int64_t rows = CAL_SAMPLE
    cdef int64_t best[2][CAL_NDIST]
    cdef int64_t *offs
    cdef char *dst
    cdef int order[2 * CAL_NDIST]
    cdef int nd = CAL_NDIST if span > CAL_MIN_SPAN else 1
    cdef int nl = 2 if short_rows(block) else 1
    cdef int r, i, j, d, t, loop
    cdef int64_t k, t0, dt, cell, other
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
    for i in range(nd * nl):
        best[i // nd][i % nd] = INT64_MAX
        order[i] = i
    for r in range(CAL_ROUNDS):
        for i in range(nd * nl - 1, 0, -1):
            j = <int>(cal_rand(&s) % <uint64_t>(i + 1))
            t = order[i]
            order[i] = order[j]
            order[j] = t
        for i in range(nd * nl):
            loop = order[i] // nd
            d = order[i] % nd
            for k in range(rows):
                offs[k] = <int64_t>(cal_rand(&s) % <uint64_t>n) * stride
            t0 = mb_now_ns()
            # loop 0: the moves where the rows allow them, 1: memcpy.
            copy_rows_of(dst, base, offs, 1, rows, block, cal_dists[d], loop == 0)
            dt = mb_now_ns() - t0
            if dt < best[loop][d]:
                best[loop][d] = dt
    free(offs)
    free(dst)
    cell = pick_distance(best[0], nd, rows, times)
    if nl == 2:
        # The faster loop, each at its own distance.
        other = pick_distance(best[1], nd, rows, NULL)
        if (other >> 8) < (cell >> 8):
            return pick_distance(best[1], nd, rows, times)
    return cell | (CELL_MOVES if nl == 2 else 0)


cdef int64_t *row_cell_at(const char *base, int64_t n, int64_t stride, int64_t block,
                          int64_t span, int *flat) noexcept nogil:
    """The calibration cell of rows of ``block`` bytes from a source of
    ``span`` bytes (its flat index into ``flat``), measured on these rows at
    first need: a cell per (span, row size) class, each rounded up to a
    power of two, except rows of 16 to 272 bytes, whose cells are per size
    (their copy loop, measured with the distance, holds for that size)."""
    cdef int i = ceil_log2(span) if span < (<int64_t>1 << 62) else 62
    cdef int j
    cdef int64_t *c
    cdef int64_t v
    if short_rows(block) and block - MB_SHORT_MIN < CAL_SHORT:
        j = <int>(block - MB_SHORT_MIN)
        c = &short_cells[i][j]
        flat[0] = RC_SHORT + i * CAL_SHORT + j
    else:
        j = min(ceil_log2(block), CAL_ROWS - 1)
        c = &cal_cells[i][j]
        flat[0] = i * CAL_ROWS + j
    v = mb_load(c)
    if v == 0 and n > 0 and block > 0:
        v = calibrate_rows(base, n, stride, block, span, NULL)
        mb_store(c, v)
    return c


cdef int64_t cell_for(const char *base, int64_t n, int64_t stride, int64_t block,
                      int64_t span) noexcept nogil:
    """The calibration cell of rows of ``block`` bytes from a source of
    ``span`` bytes, measured on these rows at first need."""
    cdef int flat
    return mb_load(row_cell_at(base, n, stride, block, span, &flat))


cdef int64_t calibrate_walk(const mb_plan *p, const char *src, int64_t span,
                            int64_t *times) noexcept nogil:
    """Time multi-axis walks of plan p on its own source, each with every
    prefetch distance of cal_dists (runs ahead), CAL_ROUNDS rounds in
    shuffled order, fresh random indices on every sampled axis for every
    walk, cut to at most CAL_SAMPLE runs and CAL_MAX_BYTES: the longest
    outer axis halved until it fits, a whole axis kept whole by stepping
    over it evenly, so that the walk spans the bytes a batch spans and
    jumps as a batch does; a shorter walk is timed several times over (fresh
    indices each time), so that each timing covers about CAL_SAMPLE runs;
    returns the packed cell (best distance, its ps per block), 0 if memory
    ran out, and the best time (ns) of each distance into ``times``.  The
    blocks are copied by the loop that batches of p use (moves_for)."""
    cdef bint moves = moves_for(p, src)
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
                gather_nd(q, src, dst, NULL, 0, idx + e * nidx, cal_dists[d], moves)
            dt = mb_now_ns() - t0
            if dt < best[d] and r >= 0:
                best[d] = dt
    free(q)
    free(idx)
    free(dst)
    return pick_distance(best, CAL_NDIST, blocks * reps, times)


cdef int64_t *walk_cell_at(const mb_plan *p, const char *src, int64_t span,
                           int *flat) noexcept nogil:
    """The calibration cell of a multi-axis walk: (span, run, sampled outer
    axes) class (its flat index into ``flat``), measured on this plan's
    walks at first need."""
    cdef const mb_axis *a = &p.ax[p.nouter - 1]
    cdef int64_t run = p.block * max(a.m, 1)
    cdef int k, jumps = 0
    for k in range(p.nouter):
        jumps += p.ax[k].sampled != 0
    cdef int i = ceil_log2(span) if span < (<int64_t>1 << 62) else 62
    cdef int j = min(ceil_log2(run), CAL_ROWS - 1)
    k = min(max(jumps, 1), WALK_KINDS) - 1
    cdef int64_t *c = &walk_cells[i][j][k]
    cdef int64_t v = mb_load(c)
    flat[0] = CAL_SPANS * CAL_ROWS + (i * CAL_ROWS + j) * WALK_KINDS + k
    if v == 0 and p.block > 0:
        v = calibrate_walk(p, src, span, NULL)
        mb_store(c, v)
    return c


cdef int64_t walk_cell(const mb_plan *p, const char *src, int64_t span) noexcept nogil:
    """The calibration cell of a multi-axis walk (walk_cell_at)."""
    cdef int flat
    return mb_load(walk_cell_at(p, src, span, &flat))


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


# The wake time is measured with the worker asleep for 50 us before each try
# (5 tries, 0.3 ms in all, so that the first large batch hardly waits for
# it); the minimum is kept: a try that waits for a busy CPU measures the
# load, not the wake-up.  A measurement taken under a burst of load would
# forbid splits that pay once the load is gone, so a batch estimated within
# WAKE_NEAR times the split bound takes a fresh measurement, the k-th
# WAKE_SPACING_MS * 2**k after the one before (each lands in another moment
# of the machine's load, and a process that runs for T seconds spends about
# log2(T / 10 ms) re-measurements of 0.3 ms), and the smallest wake time
# measured is kept.  Such a batch, if still under the bound, also tries two
# threads: the wake time of a sleeping worker is a bound, not the batch's
# cost, so near the bound the batches' own times choose.  The wake time
# only bounds which thread counts are tried; the batches' own times choose
# among them.  docs/tuning.md has the measurements behind each part.
cdef enum:
    WAKE_GAP_US = 50
    WAKE_TRIES = 5
    WAKE_NEAR = 4          # batches estimated at >= bound / 4 are near it
    WAKE_SPACING_MS = 10   # the k-th re-measurement: 10 ms * 2**k after the last

cal_wake_checks = 0
cal_wake_at = 0


cdef int64_t wake_min(int tries) noexcept nogil:
    """The smallest of ``tries`` single measurements of a sleeping pool
    worker's start (ns), each after WAKE_GAP_US of sleep; 0 if the pool is
    busy or has no worker."""
    cdef int64_t v, best = 0
    cdef int i
    for i in range(tries):
        v = pool_wake_ns(1, WAKE_GAP_US)
        if v > 0 and (best == 0 or v < best):
            best = v
    return best


cdef int64_t wake_ns() noexcept nogil:
    """How long a sleeping pool worker takes to start its chunk (the minimum
    of WAKE_TRIES tries), measured at first need; 0 if the pool is busy or
    has no worker (then no batch is split until it is measured)."""
    cdef int64_t v = mb_load(&cal_wake_ns)
    if v == 0:
        v = wake_min(WAKE_TRIES)
        if v <= 0:
            return 0
        mb_store(&cal_wake_ns, v)
        mb_store(&cal_wake_at, mb_now_ns())
    return v


cdef int64_t wake_recheck() noexcept nogil:
    """Measure the wake time again when the last measurement is
    WAKE_SPACING_MS * 2**k old (k: re-measurements so far); keep the
    smaller.  Returns the wake time (ns) to use."""
    cdef int64_t v = mb_load(&cal_wake_ns)
    cdef int64_t now = mb_now_ns()
    cdef int64_t w, k = mb_load(&cal_wake_checks)
    if k > 30 or now - mb_load(&cal_wake_at) < (<int64_t>WAKE_SPACING_MS * 1000000) << k:
        return v
    mb_store(&cal_wake_checks, mb_load(&cal_wake_checks) + 1)
    w = wake_min(WAKE_TRIES)
    mb_store(&cal_wake_at, mb_now_ns())
    if w > 0 and w < v:
        mb_store(&cal_wake_ns, w)
        return w
    return v


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
        return <int>(walk_cell(p, src, plan_span(p)) & CELL_AHEAD)
    return <int>(row_cell(p, src, plan_span(p)) & CELL_AHEAD)


cdef int64_t *plan_cell(const mb_plan *p, const char *src, int *flat) noexcept nogil:
    """The cell a batch of plan p takes its prefetch distance from (rows
    for a single-axis plan, walks for a multi-axis one), measured at first
    need, and its flat index (rc_seen, rc_best) into ``flat``."""
    if p.nouter > 1:
        return walk_cell_at(p, src, plan_span(p), flat)
    return row_cell_at(src, p.ax[0].n, p.ax[0].stride, p.block, plan_span(p), flat)


# The re-check.  A cell's distance (and, for rows of 16 to 272 bytes, its
# copy loop) is picked by one calibration (about a millisecond), and a
# burst of load in that millisecond can pick a distance or a loop that real
# batches do not run best at (docs/tuning.md).  So after a cell's first
# RC_AFTER batches, its next batches time every candidate (a distance; for
# short rows a distance and a loop, RC_NCAND of them) in runs of rc_run
# batches (about RC_RUN_NS: a single batch of a few hundred ns is within a
# few clock ticks of its rivals), one run a candidate a round, in an order
# shuffled each round, rounds RC_SPACE_NS apart (rounds in a row fall in
# one moment of the machine's load, which can reorder candidates within a
# few percent; the batches between run as the fastest candidate so far),
# and keep the least time a byte of each candidate's runs, apart for the
# even and the odd rounds.  After each block of RC_ROUNDS rounds the cell
# takes the fastest candidate, or no prefetching when that is within the
# measured noise of it (the spread between the even and odd rounds' times
# of those two, at most the calibration's 10%), with the calibrated loop
# when that is within the noise too, if the even and the odd rounds each
# pick the same; otherwise (candidates within the noise of each other)
# another block is run, at most RC_BLOCKS, and a candidate whose best runs
# are slower than the fastest's worst is dropped from it.  A batch counts
# only at the thread count of the re-check's first counted batch (a split
# batch is timed whole: the candidates compare at one thread count); a
# thread try (threads_decide) or a batch whose pool was busy runs as the
# cell says and is not counted.
# Off the re-check, a batch costs one relaxed load (the cell's count) and,
# for its first RC_AFTER batches, one relaxed store; counts that two threads
# race on may lose a batch, which only delays the re-check.
cdef enum:
    # A re-check whose batches ran at another thread count RC_MISS times in
    # a row (the class's thread choice changed) starts over at that count.
    RC_MISS = 64


cdef inline int shuffled_slot(int64_t run, int n) noexcept nogil:
    """Candidate (0 to n - 1) of run ``run`` when each round of n runs visits
    every candidate once, in an order shuffled afresh each round (a fixed
    order would time each candidate after the same one, in the state it
    leaves)."""
    cdef int order[TT_CANDS + RC_NCAND]    # n is at most RC_NCAND or TT_CANDS
    cdef uint64_t s = <uint64_t>(run // n + 1) * 0x9E3779B97F4A7C15ULL
    cdef int i, j, t
    for i in range(n):
        order[i] = i
    for i in range(n - 1, 0, -1):
        j = <int>(cal_rand(&s) % <uint64_t>(i + 1))
        t = order[i]
        order[i] = order[j]
        order[j] = t
    return order[run % n]


cdef inline int rc_ncand(int flat) noexcept nogil:
    """Candidates of cell ``flat``'s re-check: the distances, with both
    copy loops for a short-row cell whose loop is not forced by _tune."""
    return RC_NCAND if flat >= RC_SHORT and forced_moves < 0 else CAL_NDIST


cdef inline int rc_pref(int flat, int64_t v) noexcept nogil:
    """The candidate that cell ``flat`` (value v) keeps within the noise:
    no prefetching, with its calibrated loop in a short-row re-check."""
    if rc_ncand(flat) == RC_NCAND and (v & CELL_MOVES):
        return CAL_NDIST
    return 0


cdef void rc_reset(int flat, int64_t thr) noexcept nogil:
    """Start the re-check of cell ``flat`` afresh (its first position next),
    its batches counted at ``thr`` threads (0: the next counted batch's)."""
    cdef int d
    for d in range(RC_NCAND):
        mb_store(&rc_best[flat][0][d], 0)
        mb_store(&rc_best[flat][1][d], 0)
    mb_store(&rc_acc[flat][0], 0)
    mb_store(&rc_acc[flat][1], 0)
    mb_store(&rc_run[flat], 0)
    mb_store(&rc_thr[flat], thr)
    mb_store(&rc_out[flat], 0)
    mb_store(&rc_blk[flat], 0)
    mb_store(&rc_miss[flat], 0)
    mb_store(&rc_pace[flat], 0)
    mb_store(&rc_round[flat], 0)
    mb_store(&rc_wait[flat], 0)
    mb_store(&rc_lead[flat], 0)
    mb_store(&rc_seen[flat], RC_AFTER)


cdef void prefetch_pick(const mb_plan *p, const char *src, bint timed,
                        mb_prefetch *r) noexcept nogil:
    """The rows (runs) ahead for one batch of plan p into r.ahead
    (prefetch_for) and its copy loop into r.moves (-1: moves_for's), and
    r.cell >= 0 when the caller is to time the batch and pass the time to
    prefetch_record (the cell's re-check); ``timed`` false: the batch cannot
    be counted (a thread try), it runs as the cell says."""
    cdef int64_t *c
    cdef int64_t v, n, k, g, run, out
    cdef int flat, slot, i, nc
    r.cell = -1
    r.moves = -1
    if forced_prefetch >= 0 or p.prefetch >= 0:
        r.ahead = prefetch_for(p, src)
        return
    c = plan_cell(p, src, &flat)
    v = mb_load(c)
    r.ahead = <int>(v & CELL_AHEAD)
    n = mb_load(&rc_seen[flat])
    if n >= RC_DONE or v == 0:
        return
    if n < RC_AFTER:
        mb_store(&rc_seen[flat], n + 1)
        return
    if not timed:
        return
    nc = rc_ncand(flat)
    k = n - RC_AFTER
    g = max(mb_load(&rc_run[flat]), 1)
    run = k // g
    if run // nc >= mb_load(&rc_round[flat]) + 1:
        # A new round: it starts RC_SPACE_NS after the one before (in
        # batches, at the pace of the first), so that the rounds meet
        # different moments of the machine's load; the batches between run
        # as the candidate fastest so far (a calibration that picked a slow
        # one is not kept for the whole re-check).
        mb_store(&rc_round[flat], run // nc)
        mb_store(&rc_wait[flat], RC_SPACE_NS // max(mb_load(&rc_pace[flat]), 1))
        mb_store(&rc_lead[flat], 1 + rc_leader(flat, nc))
    v = mb_load(&rc_wait[flat])
    if v > 0:
        mb_store(&rc_wait[flat], v - 1)
        v = mb_load(&rc_lead[flat])
        if v > 0:
            rc_apply(r, <int>(v - 1), nc)
        return
    for i in range(nc + 1):
        run = k // g
        if run >= (mb_load(&rc_blk[flat]) + 1) * RC_ROUNDS * nc:
            rc_decide(c, flat, nc)
            v = mb_load(c)
            r.ahead = <int>(v & CELL_AHEAD)
            if mb_load(&rc_seen[flat]) >= RC_DONE:
                return
        slot = shuffled_slot(run, nc)
        out = mb_load(&rc_out[flat])
        if not (out >> slot) & 1:
            break
        # A candidate out of the race: its run is skipped.
        k = (run + 1) * g
        mb_store(&rc_seen[flat], RC_AFTER + k)
    else:
        return
    rc_apply(r, slot, nc)
    r.cell = flat
    r.slot = slot
    r.half = <int>((run // nc) & 1)
    r.pos = RC_AFTER + k
    r.c = c


cdef inline void rc_apply(mb_prefetch *r, int cand, int nc) noexcept nogil:
    """Run a batch as re-check candidate ``cand`` of nc: its distance, and
    its copy loop when the candidates cover both."""
    r.ahead = cal_dists[cand % CAL_NDIST]
    if nc == RC_NCAND:
        r.moves = cand >= CAL_NDIST


cdef void prefetch_record(const mb_prefetch *r, int64_t ns, int64_t nbytes,
                          int nthreads) noexcept nogil:
    """Note the time (ns) of a batch of ``nbytes`` output bytes on
    ``nthreads`` threads (the pool not busy) that tried distance r.slot of
    cell r.cell at position r.pos of its re-check: summed over its run,
    whose least fs a byte is kept for its round's parity."""
    cdef int f = r.cell
    cdef int64_t thr, m, g, k, v, old
    if mb_load(&rc_seen[f]) != r.pos:
        return                  # another thread took this position
    thr = mb_load(&rc_thr[f])
    if thr == 0:
        mb_store(&rc_thr[f], nthreads)
    elif thr != nthreads:
        m = mb_load(&rc_miss[f]) + 1
        mb_store(&rc_miss[f], m)
        if m >= RC_MISS:
            rc_reset(f, nthreads)
        return
    mb_store(&rc_miss[f], 0)
    g = mb_load(&rc_run[f])
    if g == 0:
        # Batches a run: about RC_RUN_NS of them, from this first batch.
        g = min(max(<int64_t>RC_RUN_NS // max(ns, 1), 1), <int64_t>RC_RUN_MAX)
        mb_store(&rc_run[f], g)
        mb_store(&rc_pace[f], max(ns, 1))
    mb_store(&rc_acc[f][0], mb_load(&rc_acc[f][0]) + ns)
    mb_store(&rc_acc[f][1], mb_load(&rc_acc[f][1]) + nbytes)
    k = r.pos - RC_AFTER
    if k % g == g - 1:
        v = mb_load(&rc_acc[f][0]) * 1000000 // max(mb_load(&rc_acc[f][1]), 1) + 1
        old = mb_load(&rc_best[f][r.half][r.slot])
        if old == 0 or v < old:
            mb_store(&rc_best[f][r.half][r.slot], v)
        mb_store(&rc_acc[f][0], 0)
        mb_store(&rc_acc[f][1], 0)
    mb_store(&rc_seen[f], r.pos + 1)


cdef int rc_leader(int flat, int nc) noexcept nogil:
    """The candidate (of nc) whose least time (both halves) is the least so
    far in cell ``flat``'s re-check; -1 if none timed."""
    cdef int64_t lo[RC_NCAND]
    cdef int64_t h0, h1
    cdef int d
    for d in range(nc):
        h0 = mb_load(&rc_best[flat][0][d])
        h1 = mb_load(&rc_best[flat][1][d])
        lo[d] = h0 if h1 == 0 or (h0 > 0 and h0 < h1) else h1
    return rc_rule(lo, nc, 0, 0)


cdef int rc_rule(const int64_t *t, int nc, int64_t margin, int pref) noexcept nogil:
    """The fastest of the nc candidates' times t (0: not timed), or the one
    without prefetching when its time is within ``margin`` per mille of it:
    ``pref`` (no prefetching, the calibrated loop) first, then the fastest's
    loop without prefetching; -1 if none timed."""
    cdef int d, best = -1, none
    for d in range(nc):
        if t[d] > 0 and (best < 0 or t[d] < t[best]):
            best = d
    if best < 0:
        return best
    if t[pref] > 0 and t[pref] * 1000 <= t[best] * (1000 + margin):
        return pref
    none = best - best % CAL_NDIST          # the fastest's loop, no prefetching
    if t[none] > 0 and t[none] * 1000 <= t[best] * (1000 + margin):
        return none
    return best


cdef void rc_decide(int64_t *c, int flat, int nc) noexcept nogil:
    """End a block of the re-check of cell c (flat index ``flat``, nc
    candidates): keep the candidate that the even rounds, the odd rounds
    and both pick alike (or both's pick after RC_BLOCKS blocks) and end the
    re-check, else drop the candidates whose best run is slower than the
    fastest's worst and go on; the cell's time a unit stays as calibrated."""
    cdef int64_t h0[RC_NCAND]
    cdef int64_t h1[RC_NCAND]
    cdef int64_t lo[RC_NCAND]
    cdef int64_t hi[RC_NCAND]
    cdef int64_t v = mb_load(c), noise = 0, out, blk
    cdef int d, f, pick, p0, p1
    cdef int pref = rc_pref(flat, v)
    for d in range(nc):
        h0[d] = mb_load(&rc_best[flat][0][d])
        h1[d] = mb_load(&rc_best[flat][1][d])
        lo[d] = h0[d] if h1[d] == 0 or (h0[d] > 0 and h0[d] < h1[d]) else h1[d]
        hi[d] = max(h0[d], h1[d])
    f = rc_rule(lo, nc, 0, pref)
    blk = mb_load(&rc_blk[flat]) + 1
    mb_store(&rc_blk[flat], blk)
    if f < 0:
        mb_store(&rc_seen[flat], RC_DONE)    # nothing timed: the pick stays
        return
    # The noise: how far the even and the odd rounds' least times of the
    # kept candidate and of the fastest lie apart.
    for d in range(nc):
        if (d == pref or d == f) and h0[d] > 0 and h1[d] > 0:
            noise = max(noise, (hi[d] - lo[d]) * 1000 // lo[d])
    noise = min(noise, <int64_t>100)
    pick = rc_rule(lo, nc, noise, pref)
    p0 = rc_rule(h0, nc, noise, pref)
    p1 = rc_rule(h1, nc, noise, pref)
    if (p0 == pick and p1 == pick) or blk >= RC_BLOCKS:
        v = (v & ~(<int64_t>CELL_AHEAD)) | cal_dists[pick % CAL_NDIST]
        if nc == RC_NCAND:
            v = (v & ~(<int64_t>CELL_MOVES)) | (CELL_MOVES if pick >= CAL_NDIST else 0)
        mb_store(c, v)
        mb_store(&rc_seen[flat], RC_DONE)
        return
    out = mb_load(&rc_out[flat])
    for d in range(nc):
        if lo[d] > hi[f] and d != pick and d != p0 and d != p1:
            out |= <int64_t>1 << d
    mb_store(&rc_out[flat], out)


cdef bint moves_for(const mb_plan *p, const char *src) noexcept nogil:
    """Whether a batch of plan p copies its rows (a walk: its blocks) of 16
    to 272 bytes by 16-byte moves rather than memcpy: forced by _tune, else
    the loop its row cell measured faster."""
    if not short_rows(p.block):
        return False
    if forced_moves >= 0:
        return forced_moves
    return (row_cell(p, src, plan_span(p)) & CELL_MOVES) != 0


# Thread counts are chosen by timing real batches.  Batches are grouped by
# their estimated one-thread time (calibrated costs of an index drawn and a
# row copied), in classes of a power of two (ns), multi-axis walks apart.
# The candidates are 1, 2, 4, ... threads, up to the limit and to one thread
# per wake time of work (a worker's share must at least pay for its
# wake-up); a batch estimated under twice the wake time is never split.  A
# class's first batches run a duel: rounds in which each candidate runs a
# run of batches in a row (tt_reset), in an order shuffled each round.  The
# first batch of a run is not counted (workers that slept since the class's
# last split wake slower); the others' time over their estimate is kept as
# the least of the candidate's runs, for the even and the odd rounds apart:
# runs in a row, interleaved, meet the machine's load alike, where tries
# taken at different moments compare the load of those moments.  After
# each block of TT_ROUNDS rounds the class takes the fewest threads within
# the measured noise of the fastest (tt_choose) if the even and the odd
# rounds each pick them; otherwise another block runs, at most TT_BLOCKS,
# without the counts whose best run is slower than the fastest's worst.
# After the choice, one round every TT_EVERY runs' batches goes on timing
# the pick and the counts next to it (half and twice the threads) and adds
# to their least times, and the class re-picks among them as the duel does
# (tt_repick): the load of other processes comes and goes, and a duel sees
# only its own moment.  TT_AGAIN rounds after its choice a class runs a new
# duel over the pick and the counts next to it (tt_local), so that least
# times of an earlier load do not hold for ever; a pick moves a step at a
# time, and counts far from it, many times slower on a many-core machine,
# are not timed again.  docs/tuning.md has the measurements behind each
# part.
cdef void tt_reset(int c, int64_t ncand, int64_t est) noexcept nogil:
    """Start a duel of class c over candidates 0 to ncand - 1, in runs of
    about TT_RUN_NS for batches estimated at ``est`` ns (TT_RUN to
    TT_RUN_MAX batches): a run of a few short batches times the luck of a
    few, and the least of such runs favoured the count whose time varies
    most."""
    cdef int k
    for k in range(TT_CANDS):
        mb_store(&tt_best[c][0][k], 0)
        mb_store(&tt_best[c][1][k], 0)
    mb_store(&tt_acc[c][0], 0)
    mb_store(&tt_acc[c][1], 0)
    mb_store(&tt_out[c], 0)
    mb_store(&tt_blk[c], 0)
    mb_store(&tt_seen[c], 0)
    mb_store(&tt_pick[c], 0)
    mb_store(&tt_pos[c], 0)
    mb_store(&tt_run[c], min(max(<int64_t>TT_RUN_NS // max(est, 1), <int64_t>TT_RUN),
                             <int64_t>TT_RUN_MAX))
    mb_store(&tt_top[c], ncand)


cdef inline int tt_window(int k, int n, int *first) noexcept nogil:
    """The counts next to candidate k of n, k among them: from first[0],
    returns how many (k - 1 to k + 1, within 0 to n - 1)."""
    first[0] = max(k - 1, 0)
    return min(k + 1, n - 1) - first[0] + 1


cdef void tt_local(int c, int n, int64_t est, int k) noexcept nogil:
    """Start a duel of class c, whose pick is candidate k of n, over k and
    the counts next to it (the others out): a load that changed since the
    last duel moves the pick a step, and the duel does not time counts far
    from the pick (on a machine whose pick is 64 threads, runs on one
    thread would take many times the pick's time, in every duel)."""
    cdef int first, m = tt_window(k, n, &first), j
    cdef int64_t out = 0
    tt_reset(c, n, est)
    for j in range(n):
        if j < first or j >= first + m:
            out |= <int64_t>1 << j
    mb_store(&tt_out[c], out)
    mb_store(&tt_pick[c], k)


cdef int tt_rule(const int64_t *t, int n, int64_t margin) noexcept nogil:
    """The fewest threads (candidate 0 to n - 1) whose time t[k] (0: not
    timed) is within ``margin`` per mille of the fastest; -1 if none timed."""
    cdef int k, best = -1
    for k in range(n):
        if t[k] > 0 and (best < 0 or t[k] < t[best]):
            best = k
    for k in range(max(best, 0)):
        if t[k] > 0 and t[k] * 1000 <= t[best] * (1000 + margin):
            return k
    return best


cdef int tt_choose(int n, const int64_t *h0, const int64_t *h1, int64_t *lo, int64_t *hi,
                   int *picks) noexcept nogil:
    """From the least times of n thread counts in the even rounds (h0) and
    the odd rounds (h1) (0: not timed): the less (lo) and the greater (hi)
    of each pair, and the picks of both, of the even and of the odd rounds
    (picks[0..2]): the fewest threads within the noise of the fastest, the
    noise being how far the even and the odd rounds' times of the fastest
    and of the fewer threads lie apart (per mille, at most TT_NOISE).
    Returns the fastest (-1 if none timed)."""
    cdef int k, f
    cdef int64_t noise = 0
    for k in range(n):
        lo[k] = h0[k] if h1[k] == 0 or (h0[k] > 0 and h0[k] < h1[k]) else h1[k]
        hi[k] = max(h0[k], h1[k])
    f = tt_rule(lo, n, 0)
    for k in range(f + 1):
        if h0[k] > 0 and h1[k] > 0:
            noise = max(noise, (hi[k] - lo[k]) * 1000 // lo[k])
    noise = min(noise, <int64_t>TT_NOISE)
    picks[0] = tt_rule(lo, n, noise)
    picks[1] = tt_rule(h0, n, noise)
    picks[2] = tt_rule(h1, n, noise)
    return f


cdef void tt_load(int c, int n, int64_t *h0, int64_t *h1) noexcept nogil:
    """Class c's least times of its n candidates, even and odd rounds."""
    cdef int k
    for k in range(n):
        h0[k] = mb_load(&tt_best[c][0][k])
        h1[k] = mb_load(&tt_best[c][1][k])


cdef void tt_decide(int c, int n) noexcept nogil:
    """End a block of class c's duel over n candidates: keep the count that
    the even rounds, the odd rounds and both pick alike (or both's pick
    after TT_BLOCKS blocks), else drop the counts whose best run is slower
    than the fastest's worst and go on.  A pick is the fewest threads
    within the noise of the fastest (tt_choose): more threads that gain no
    more than the noise take CPUs from the rest of the machine for nothing
    (docs/tuning.md)."""
    cdef int64_t h0[TT_CANDS], h1[TT_CANDS], lo[TT_CANDS], hi[TT_CANDS]
    cdef int64_t out, blk
    cdef int picks[3]
    cdef int k, f, pick, p0, p1
    tt_load(c, n, h0, h1)
    f = tt_choose(n, h0, h1, lo, hi, picks)
    pick, p0, p1 = picks[0], picks[1], picks[2]
    blk = mb_load(&tt_blk[c]) + 1
    mb_store(&tt_blk[c], blk)
    if f < 0 or (p0 == pick and p1 == pick) or blk >= TT_BLOCKS:
        if pick >= 0:
            mb_store(&tt_pick[c], pick)
        mb_store(&tt_seen[c], 0)
        mb_store(&tt_pos[c], TT_DONE)
        return
    out = mb_load(&tt_out[c])
    for k in range(n):
        if lo[k] > hi[f] and k != pick and k != p0 and k != p1:
            out |= <int64_t>1 << k
    mb_store(&tt_out[c], out)


cdef void threads_decide(const mb_plan *p, const char *src, int64_t nbytes, int cap,
                         mb_threads *r) noexcept nogil:
    """Threads (1 to cap) for one batch of plan p with nbytes of output
    (several arrays' for draw_group), into r.n; r.cls >= 0 asks the caller
    to time the batch and pass it to threads_record."""
    cdef int64_t wake, thr, rows, est, v, run, out, g
    cdef int k, top, c, i, n, m, lo
    cdef bint near
    r.n = 1
    r.cls = -1
    r.warm = 0
    r.upkeep = 0
    r.last = 0
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
    near = False
    if est < thr and PARALLEL_MIN_NS < 0 and est * WAKE_NEAR >= thr:
        # Near the bound: a wake time measured under load may be what
        # forbids the split; measure it again, and let the batches' times
        # choose between one and two threads.
        thr = 2 * wake_recheck()
        near = est < thr
    if est < thr and not near:
        return
    if thr <= 0 or PARALLEL_MIN_NS >= 0:
        # A threshold set by _tune: the model alone, nothing timed.
        r.n = cap if thr <= 0 else <int>max(2, min(2 * est // thr, <int64_t>cap))
        return
    # Candidates 0..top: 1, 2, 4, ... threads, the last min(2**top, limit).
    top = 1 if near else ceil_log2(min(2 * est // thr, <int64_t>cap))
    top = min(top, TT_CANDS - 1)
    n = top + 1
    c = min(ceil_log2(est), TT_CLASSES // 2 - 1) + (TT_CLASSES // 2 if p.nouter > 1 else 0)
    if mb_load(&tt_top[c]) != n:
        tt_reset(c, n, est)            # other candidates: a new duel
    v = mb_load(&tt_pos[c])
    g = mb_load(&tt_run[c])
    if v >= TT_DONE:
        k = <int>mb_load(&tt_pick[c])
        r.n = <int>min(<int64_t>1 << k, <int64_t>cap)
        v = mb_load(&tt_seen[c])
        mb_store(&tt_seen[c], v + 1)
        run = v // (TT_EVERY * g)           # rounds after the choice
        v = v % (TT_EVERY * g)
        if run >= TT_AGAIN:
            tt_local(c, n, est, k)
            return
        m = tt_window(k, n, &lo)
        if v < m * g:
            # A round after the choice: the pick and the counts next to it
            # one run each, shuffled.
            k = lo + shuffled_slot(run * m + v // g, m)
            r.cls = c
            r.cand = k
            r.warm = v % g == 0
            r.upkeep = True
            r.last = v == m * g - 1
            r.pos = v
            r.half = <int>(run & 1)
            r.n = <int>min(<int64_t>1 << k, <int64_t>cap)
        return
    # A count out of the duel has its runs skipped: at most n - 1 in a row
    # in a round, and as many at the start of the next.
    for i in range(2 * n + 1):
        run = v // g
        if run >= (mb_load(&tt_blk[c]) + 1) * TT_ROUNDS * n:
            tt_decide(c, n)
            if mb_load(&tt_pos[c]) >= TT_DONE:
                k = <int>mb_load(&tt_pick[c])
                r.n = <int>min(<int64_t>1 << k, <int64_t>cap)
                return
        k = shuffled_slot(run, n)
        out = mb_load(&tt_out[c])
        if not (out >> k) & 1:
            break
        v = (run + 1) * g               # a count out of the duel: its run skipped
        mb_store(&tt_pos[c], v)
    else:
        r.n = <int>min(<int64_t>1 << mb_load(&tt_pick[c]), <int64_t>cap)
        return
    r.cls = c
    r.cand = k
    r.warm = v % g == 0
    r.upkeep = False
    r.pos = v
    r.half = <int>((run // n) & 1)
    r.n = <int>min(<int64_t>1 << k, <int64_t>cap)


cdef void threads_record(const mb_threads *r, int64_t ns) noexcept nogil:
    """Note the time of a batch that ran candidate r.cand of class r.cls at
    position r.pos of its duel (r.warm: the first of a run, not counted):
    summed over its run, whose least time over the estimate is kept for its
    round's parity."""
    cdef int c = r.cls
    cdef int64_t v, old, g = mb_load(&tt_run[c])
    cdef int n = <int>mb_load(&tt_top[c])
    if not r.upkeep and mb_load(&tt_pos[c]) != r.pos:
        return                  # another thread took this position
    if not r.warm:
        mb_store(&tt_acc[c][0], mb_load(&tt_acc[c][0]) + ns)
        mb_store(&tt_acc[c][1], mb_load(&tt_acc[c][1]) + max(r.est, 1))
        if r.pos % g == g - 1:
            v = mb_load(&tt_acc[c][0]) * 1024 // max(mb_load(&tt_acc[c][1]), 1) + 1
            old = mb_load(&tt_best[c][r.half][r.cand])
            if old == 0 or v < old:
                mb_store(&tt_best[c][r.half][r.cand], v)
            mb_store(&tt_acc[c][0], 0)
            mb_store(&tt_acc[c][1], 0)
            if r.last:
                tt_repick(c, n)
    if not r.upkeep:
        mb_store(&tt_pos[c], r.pos + 1)


cdef void tt_repick(int c, int n) noexcept nogil:
    """After a round that follows class c's choice: the count that the
    least times of the pick and the counts next to it pick (the fewest
    threads within their noise of the fastest, as tt_decide), when the
    even and the odd rounds pick it too."""
    cdef int64_t h0[TT_CANDS], h1[TT_CANDS], lo[TT_CANDS], hi[TT_CANDS]
    cdef int picks[3]
    cdef int first, m = tt_window(<int>mb_load(&tt_pick[c]), n, &first)
    tt_load(c, n, h0, h1)
    tt_choose(m, h0 + first, h1 + first, lo, hi, picks)
    if picks[0] >= 0 and picks[1] == picks[0] and picks[2] == picks[0]:
        mb_store(&tt_pick[c], first + picks[0])


cdef int64_t gil_ps() noexcept:
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


cdef void forget_calibration() noexcept nogil:
    """Drop every measurement and thread choice, so that the next batches
    measure again (Samplers decide again whether to keep the GIL: cal_gen)."""
    global cal_gen
    cdef int i, j, k
    mb_store(&cal_gil_ps, 0)
    cal_gen += 1
    for i in range(CAL_SPANS):
        for j in range(CAL_ROWS):
            mb_store(&cal_cells[i][j], 0)
            for k in range(WALK_KINDS):
                mb_store(&walk_cells[i][j][k], 0)
        for j in range(CAL_SHORT):
            mb_store(&short_cells[i][j], 0)
    for i in range(RC_CELLS):
        if mb_load(&rc_seen[i]) != 0:
            rc_reset(i, 0)
            mb_store(&rc_seen[i], 0)
    for i in range(3):
        mb_store(&cal_draw_ps[i], 0)
    mb_store(&cal_wake_ns, 0)
    mb_store(&cal_wake_checks, 0)
    for i in range(TT_CLASSES):
        tt_reset(i, 0, 0)
