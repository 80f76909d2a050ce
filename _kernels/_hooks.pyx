# cython: language_level=3
"""Hooks for tests and benchmarks: read and force the dispatcher's choices
(``_dispatch.pyx``), the process's vector level (``_simd.pyx``) and its
worker pool (``_pool.pyx``), and time the copy loops (``_copy.pxd``) alone.
mbcore itself never calls them.
"""
cimport numpy as cnp
from libc.string cimport memcpy
from libc.stdint cimport int64_t

from mbcore._kernels._copy cimport copy_rows_of, short_rows
from mbcore._kernels cimport _dispatch
from mbcore._kernels._dispatch cimport (CAL_SPANS, CAL_ROWS, CAL_NDIST, CAL_MIN_SPAN, CAL_SHORT,
                                        WALK_KINDS, CELL_AHEAD, CELL_MOVES, mb_threads,
                                        auto_prefetch, prefetch_for, moves_for,
                                        threads_decide, tt_choose, cell_for, gil_ps, GIL_KEEP_PCT,
                                        calibrate_rows, calibrate_walk, forget_calibration,
                                        plan_cell, rc_reset, RC_AFTER, RC_DONE,
                                        RC_ROUNDS, RC_BLOCKS, RC_RUN_MAX, RC_NCAND, RC_SHORT,
                                        TT_CLASSES, TT_CANDS, TT_DONE, batch_ps)
from mbcore._kernels._gather cimport Sampler
from mbcore._kernels._plan cimport plan_span
from mbcore._kernels._pool cimport pool_size, pool_wake_ns, MB_POOL_MAX
from mbcore._kernels._simd cimport simd_switch

cnp.import_array()

cdef extern from "mb_measure.h":
    int64_t mb_load(const int64_t *p) noexcept nogil


cdef bint keeps_gil(int64_t est_ps):
    """Whether a batch estimated at est_ps keeps the GIL, as Sampler decides
    it (forced by _tune, else when a release and retake would add more than
    GIL_KEEP_PCT percent to its time).  Called with the GIL held."""
    if _dispatch.forced_gil >= 0:
        return _dispatch.forced_gil
    return gil_ps() * 100 > est_ps * GIL_KEEP_PCT


def _simd(level=None):
    """_simd(level=None)

    The process's vector level for drawing: every module's draws switch
    with it.  Sets it ("scalar", "avx2", "avx512"; "auto": the widest this
    CPU has) unless level is None, and returns the old one.  The draws do
    not depend on it.
    """
    return simd_switch(level)


def _tune(parallel_min_bytes=None, prefetch=None, parallel_min_ns=None, threads=None,
          gil=None, loop=None):
    """_tune(parallel_min_bytes=None, prefetch=None, parallel_min_ns=None, threads=None,
             gil=None, loop=None)

    For tests and benchmarks, read on every batch: the output size (bytes)
    below which a batch is never split; the estimated one-thread time (ns)
    from which it is (-1: twice the measured wake time of a pool worker);
    the prefetch distance ("auto": calibrated, "off": 0, "on": 8 rows
    (runs of a multi-axis walk) ahead, or an int: that many ahead); the thread count (0:
    calibrated; n: n threads for every batch of 16 rows or more, within
    set_num_threads' limit); the GIL ("auto": measured, "keep": held
    through every batch, "release": released for every batch); the loop
    that copies rows of 16 to 272 bytes ("auto": measured, "moves": 16-byte
    moves, "memcpy": libc's memcpy).  None leaves a setting alone.  Returns
    the old settings, in an order that ``_tune(*old)`` restores.
    """
    cdef dict modes = {"auto": -1, "off": 0, "on": 8}
    cdef dict gil_modes = {"auto": -1, "release": 0, "keep": 1}
    cdef dict loop_modes = {"auto": -1, "memcpy": 0, "moves": 1}
    old_prefetch = ([k for k, v in modes.items() if v == _dispatch.forced_prefetch]
                    or [_dispatch.forced_prefetch])[0]
    old_gil = [k for k, v in gil_modes.items() if v == _dispatch.forced_gil][0]
    old_loop = [k for k, v in loop_modes.items() if v == _dispatch.forced_moves][0]
    old = (_dispatch.PARALLEL_MIN_BYTES, old_prefetch, _dispatch.PARALLEL_MIN_NS,
           _dispatch.forced_threads, old_gil, old_loop)
    if gil is not None and gil not in gil_modes:
        raise ValueError(f"gil must be one of {sorted(gil_modes)}, got {gil!r}")
    if loop is not None and loop not in loop_modes:
        raise ValueError(f"loop must be one of {sorted(loop_modes)}, got {loop!r}")
    if prefetch is not None and prefetch not in modes and not (
            type(prefetch) is int and 0 <= prefetch <= 1024):
        raise ValueError(f"prefetch must be one of {sorted(modes)} or an int in [0, 1024], "
                         f"got {prefetch!r}")
    if threads is not None and not (type(threads) is int and 0 <= threads <= MB_POOL_MAX + 1):
        raise ValueError(f"threads must be an int in [0, {MB_POOL_MAX + 1}], got {threads!r}")
    if parallel_min_bytes is not None:
        _dispatch.PARALLEL_MIN_BYTES = parallel_min_bytes
    if parallel_min_ns is not None:
        _dispatch.PARALLEL_MIN_NS = parallel_min_ns
    if prefetch is not None:
        _dispatch.forced_prefetch = modes[prefetch] if isinstance(prefetch, str) else prefetch
    if threads is not None:
        _dispatch.forced_threads = threads
    if gil is not None:
        _dispatch.forced_gil = gil_modes[gil]
    if loop is not None:
        _dispatch.forced_moves = loop_modes[loop]
    return old


def _prefetch_ahead(Sampler s not None):
    """_prefetch_ahead(sampler)

    For tests: rows (runs) between a prefetch and its copy in a batch of
    this Sampler, 0 when it does not prefetch (calibrating first if its
    cell is not measured yet).
    """
    return prefetch_for(&s.plan, <const char *>cnp.PyArray_DATA(s.data))


def _set_prefetch_cell(Sampler s not None, int ahead, loop=None):
    """_set_prefetch_cell(sampler, ahead, loop=None)

    For tests: set the distance held by the cell that this Sampler's
    batches take their prefetch distance from (calibrating it first if not
    measured; its time a unit is kept) to ``ahead`` rows (runs), and its
    copy loop to ``loop`` ("moves" or "memcpy", rows of 16 to 272 bytes
    only; None: kept), and start its re-check over: the cell's next
    RC_AFTER batches run so, the next ones re-check it.  Returns (RC_AFTER,
    the most batches the re-check can count after them).
    """
    cdef int flat
    cdef int64_t *c
    cdef int64_t v
    if not 0 <= ahead <= CELL_AHEAD:
        raise ValueError(f"ahead must be in [0, {CELL_AHEAD}], got {ahead}")
    if loop not in (None, "moves", "memcpy"):
        raise ValueError(f"loop must be None, 'moves' or 'memcpy', got {loop!r}")
    if s.plan.prefetch >= 0:
        raise ValueError("this Sampler's source is not prefetched (no cell)")
    if loop is not None and (s.plan.nouter > 1 or not short_rows(s.plan.block)):
        raise ValueError(f"loop={loop!r}: only a single-axis Sampler of rows of 16 to 272 "
                         f"bytes chooses its copy loop, not rows of {s.plan.block} bytes")
    c = plan_cell(&s.plan, <const char *>cnp.PyArray_DATA(s.data), &flat)
    v = c[0]
    if v == 0:
        raise RuntimeError("the cell could not be measured (out of memory)")
    rc_reset(flat, 0)
    _dispatch.rc_seen[flat] = 0
    v = (v & ~(<int64_t>CELL_AHEAD)) | ahead
    if loop is not None:
        v = (v & ~(<int64_t>CELL_MOVES)) | (CELL_MOVES if loop == "moves" else 0)
    c[0] = v
    return int(RC_AFTER), int(RC_BLOCKS * RC_ROUNDS * RC_NCAND * RC_RUN_MAX)


def _prefetch_recheck(Sampler s not None):
    """_prefetch_recheck(sampler)

    For tests and benchmarks: the state of the re-check of the cell this
    Sampler's batches take their prefetch distance (and copy loop) from:
    ``done``, ``counted`` (its batches counted so far), ``run`` (batches a
    run), ``threads`` (the thread count its batches are counted at, 0: none
    yet), ``blocks`` (blocks of rounds decided), ``dropped`` (candidates out
    of the race, (distance, loop)), ``times`` ({distance: (least fs a byte
    of its runs in the even rounds, in the odd rounds), 0: not timed}, with
    the cell's loop now), ``loops`` ({loop: such times}, both loops for rows
    of 16 to 272 bytes, whose re-check times both; else the one loop),
    ``ahead`` (the cell's distance now) and ``loop`` (its loop now:
    "moves" or "memcpy").  None for a Sampler whose source is not
    prefetched.
    """
    cdef int flat, i
    cdef int64_t *c
    cdef int64_t n, v
    if s.plan.prefetch >= 0:
        return None
    c = plan_cell(&s.plan, <const char *>cnp.PyArray_DATA(s.data), &flat)
    n = mb_load(&_dispatch.rc_seen[flat])
    v = mb_load(c)
    dists = [_dispatch.cal_dists[i] for i in range(CAL_NDIST)]
    loop = "moves" if short_rows(s.plan.block) and v & CELL_MOVES else "memcpy"
    both = flat >= RC_SHORT and _dispatch.forced_moves < 0
    names = ["memcpy", "moves"] if both else [loop]
    out = mb_load(&_dispatch.rc_out[flat])
    loops = {name: {dists[i]: (int(_dispatch.rc_best[flat][0][j * CAL_NDIST + i]),
                               int(_dispatch.rc_best[flat][1][j * CAL_NDIST + i]))
                     for i in range(CAL_NDIST)}
             for j, name in enumerate(names)}
    return {"done": n >= RC_DONE, "counted": int(max(0, n - RC_AFTER)) if n < RC_DONE else None,
            "run": int(_dispatch.rc_run[flat]), "threads": int(_dispatch.rc_thr[flat]),
            "blocks": int(_dispatch.rc_blk[flat]),
            "dropped": [(dists[i % CAL_NDIST], names[i // CAL_NDIST])
                        for i in range(len(names) * CAL_NDIST) if (out >> i) & 1],
            "times": loops[loop], "loops": loops,
            "ahead": int(v & CELL_AHEAD), "loop": loop}


def _thread_duels():
    """_thread_duels()

    For tests and benchmarks: the thread choice of each class of batches
    that has one, {class: {...}}, classes 0-47 for single-axis batches,
    48-95 for multi-axis walks (log2 of the estimated ns, offset): ``threads``
    (the candidate counts), ``done`` (chosen), ``pick`` (the count chosen),
    ``blocks`` (blocks of rounds decided), ``run`` (batches a run),
    ``out`` (the counts out of the duel), ``times`` ({threads: (least time
    of its runs over their estimate, x1024, in the even rounds, in the odd
    rounds), 0: not timed}).
    """
    cdef int c, k
    cdef int cap = max(_dispatch.max_threads, 1)
    res = {}
    for c in range(TT_CLASSES):
        n = int(mb_load(&_dispatch.tt_top[c]))
        if n == 0:
            continue
        counts = [min(1 << k, cap) for k in range(n)]
        res[c] = {"threads": counts, "done": mb_load(&_dispatch.tt_pos[c]) >= TT_DONE,
                  "pick": counts[int(_dispatch.tt_pick[c])],
                  "blocks": int(_dispatch.tt_blk[c]), "run": int(_dispatch.tt_run[c]),
                  "out": [counts[k] for k in range(n) if (_dispatch.tt_out[c] >> k) & 1],
                  "times": {counts[k]: (int(_dispatch.tt_best[c][0][k]),
                                        int(_dispatch.tt_best[c][1][k])) for k in range(n)}}
    return res


def _set_thread_pick(int cls, int threads):
    """_set_thread_pick(cls, threads)

    For tests: end the duel of class ``cls`` (a key of _thread_duels())
    with the pick ``threads`` (one of its counts), its least times cleared,
    as if just chosen: the rounds after the choice follow.
    """
    if not 0 <= cls < TT_CLASSES or _dispatch.tt_top[cls] == 0:
        raise ValueError(f"cls must be a class with a duel (_thread_duels()), got {cls}")
    counts = _thread_duels()[cls]["threads"]
    if threads not in counts:
        raise ValueError(f"threads must be one of class {cls}'s counts {counts}, got {threads}")
    cdef int k
    for k in range(TT_CANDS):
        _dispatch.tt_best[cls][0][k] = 0
        _dispatch.tt_best[cls][1][k] = 0
    _dispatch.tt_pick[cls] = counts.index(threads)
    _dispatch.tt_out[cls] = 0
    _dispatch.tt_seen[cls] = 0
    _dispatch.tt_pos[cls] = TT_DONE


def _thread_rule(even, odd):
    """_thread_rule(even, odd)

    For tests: what a thread duel picks from the least times of its
    candidates (1, 2, 4, ... threads; 0: not timed) in the even rounds and
    in the odd rounds: (the fastest, the pick, the even rounds' pick, the
    odd rounds' pick), candidate indices, -1 where nothing was timed.  A
    duel keeps the pick when all three agree.
    """
    cdef int64_t h0[TT_CANDS], h1[TT_CANDS], lo[TT_CANDS], hi[TT_CANDS]
    cdef int picks[3]
    cdef int k, f, n = len(even)
    if len(odd) != n or not 1 <= n <= TT_CANDS:
        raise ValueError(f"even and odd must hold the same number (1 to {TT_CANDS}) of "
                         f"times, got {len(even)} and {len(odd)}")
    for k in range(n):
        h0[k] = even[k]
        h1[k] = odd[k]
    f = tt_choose(n, h0, h1, lo, hi, picks)
    return f, picks[0], picks[1], picks[2]


def _copy_loop(Sampler s not None):
    """_copy_loop(sampler)

    For tests: the loop that copies this Sampler's rows (blocks of a walk):
    "moves" (16-byte moves, rows of 16 to 272 bytes) or "memcpy"
    (calibrating first if its cell is not measured yet).
    """
    return "moves" if moves_for(&s.plan, <const char *>cnp.PyArray_DATA(s.data)) else "memcpy"


def _batch_threads(Sampler s not None):
    """_batch_threads(sampler)

    For tests: the threads a batch of this Sampler runs on now (measuring
    what the choice needs first).
    """
    cdef int cap = _dispatch.max_threads
    cdef const char *src = <const char *>cnp.PyArray_DATA(s.data)
    if cap <= 1 or not s.plan.ax[0].sampled:
        return 1
    cdef mb_threads tr
    with nogil:
        threads_decide(&s.plan, src, s.out_bytes, cap, &tr)
    return tr.n


def _batch_estimate_ns(Sampler s not None):
    """_batch_estimate_ns(sampler)

    For tests: a batch's estimated one-thread time (ns), from the calibrated
    costs of an index drawn and a row copied, as the thread choice
    estimates it (measuring them first if needed).
    """
    cdef int64_t v
    cdef const char *src = <const char *>cnp.PyArray_DATA(s.data)
    with nogil:
        v = batch_ps(&s.plan, src, s.out_bytes)
    return int(v // 1000)


def _keeps_gil(Sampler s not None):
    """_keeps_gil(sampler)

    For tests: whether a batch of this Sampler runs with the GIL held
    (measuring what the choice needs first).
    """
    if s.gil_gen != _dispatch.cal_gen:
        s._estimate()
    return bool(_dispatch.forced_gil == 1 or (_dispatch.forced_gil < 0 and s.keep_gil))


def _dispatch_info():
    """_dispatch_info()

    What the dispatcher has measured in this process: ``wake_ns`` (a pool
    worker's wake time, None if not measured), ``draw_ps`` (ps an index, per
    vector level measured), ``gil_ps`` (ps to release the GIL and take it
    back, None if not measured), ``cells`` ({(span class, row class): (rows ahead,
    ps a row)}, classes as log2 of bytes, rows outside 16 to 272 bytes),
    ``short_cells`` (the same for rows of 16 to 272 bytes, a cell per size:
    {(span class, row bytes): (rows ahead, ps a row)}), ``loops`` ({(span
    class, row bytes): "moves" or "memcpy"}, the loop measured faster for
    rows of that size), ``walk_cells`` (the same as ``cells`` for
    multi-axis walks: {(span class, run class, sampled outer axes): (runs
    ahead, ps a block)}),
    ``wake_checks`` (its re-measurements, taken for batches near the split
    bound), ``workers`` (pool threads started) and ``max_threads``.
    """
    cells, short, loops, walks = {}, {}, {}, {}
    for i in range(CAL_SPANS):
        for j in range(CAL_SHORT):
            v = mb_load(&_dispatch.short_cells[i][j])
            if v:
                short[(i, 16 + j)] = (int(v & CELL_AHEAD), int(v >> 8))
                loops[(i, 16 + j)] = "moves" if v & CELL_MOVES else "memcpy"
        for j in range(CAL_ROWS):
            v = mb_load(&_dispatch.cal_cells[i][j])
            if v:
                cells[(i, j)] = (int(v & CELL_AHEAD), int(v >> 8))
            for k in range(WALK_KINDS):
                v = mb_load(&_dispatch.walk_cells[i][j][k])
                if v:
                    walks[(i, j, k + 1)] = (int(v & CELL_AHEAD), int(v >> 8))
    names = ["scalar", "avx2", "avx512"]
    return {"wake_ns": int(_dispatch.cal_wake_ns) or None,
            "wake_checks": int(_dispatch.cal_wake_checks),
            "gil_ps": int(_dispatch.cal_gil_ps) or None,
            "draw_ps": {names[i]: int(_dispatch.cal_draw_ps[i])
                        for i in range(3) if _dispatch.cal_draw_ps[i]},
            "cells": cells, "short_cells": short, "loops": loops, "walk_cells": walks,
            "workers": pool_size(),
            "max_threads": _dispatch.max_threads}


def _forget_calibration():
    """_forget_calibration()

    For tests and benchmarks: drop every measurement and thread choice, so
    that the next batches measure again.
    """
    forget_calibration()


def _set_wake(int64_t ns, bint remeasure=True):
    """_set_wake(ns, remeasure=True): for tests, take ``ns`` as the measured
    wake time of a pool worker (as a measurement under load would leave it),
    with its re-measurements due at the next batch near the split bound, or
    with none left when ``remeasure`` is false."""
    _dispatch.cal_wake_ns = ns
    _dispatch.cal_wake_checks = 0 if remeasure else 31
    _dispatch.cal_wake_at = 0


def _measure_wake(int tries, int gap_us):
    """_measure_wake(tries, gap_us): a fresh measurement of wake_ns (for
    benchmarks), ns; None when no worker could be used."""
    cdef int64_t v
    with nogil:
        v = pool_wake_ns(tries, gap_us)
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
        return {_dispatch.cal_dists[i]: times[i] for i in range(nd)}
    with nogil:
        calibrate_rows(src, s.plan.ax[0].n, s.plan.ax[0].stride, s.plan.block, span, times)
    return {_dispatch.cal_dists[i]: times[i] for i in range(nd)}


def _pool_workers():
    """_pool_workers(): worker threads the pool has started in this process."""
    return pool_size()


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
    cdef int64_t cell
    cdef bint moves
    if row == 0 or m == 0:
        return
    with nogil:
        cell = cell_for(s, n, row, row, cnp.PyArray_NBYTES(src))
    if _dispatch.forced_prefetch >= 0:
        prefetch = _dispatch.forced_prefetch
    elif prefetch < 0:
        prefetch = <int>(cell & CELL_AHEAD)
    moves = short_rows(row) and (_dispatch.forced_moves == 1 or (
        _dispatch.forced_moves < 0 and cell & CELL_MOVES))
    est = m * (cell >> 8)
    if keeps_gil(est):
        copy_rows_of(d, s, ip, row, m, row, prefetch, moves)
    else:
        with nogil:
            copy_rows_of(d, s, ip, row, m, row, prefetch, moves)
