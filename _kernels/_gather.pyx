# cython: language_level=3
"""The fused draw-and-gather of a batch, the ``Sampler`` that owns a plan,
and ``BatchIterator``, the C-level base of ``mbcore.Minibatch``.

Two tiers, as numpy/random does: ``cdef ... noexcept nogil`` workers on raw
pointers, byte strides and itemsize (one gather serves every dtype and
layout), and ``Sampler``, a thin wrapper that checks its input once, builds the
plan, and per batch allocates the output and enters exactly one ``nogil``
block.  The walk of a plan is ``_plan.pyx``, the copy loops ``_copy.pxd``,
the choices of prefetch distance, threads and GIL ``_dispatch.pyx``, the
worker pool ``_pool.pyx``; the hooks that tests and benchmarks use to read
and force those choices are ``_hooks.pyx``.
"""
import numpy as np
cimport cython
cimport numpy as cnp
from cpython.ref cimport Py_INCREF
from cpython.mem cimport PyMem_RawMalloc, PyMem_RawFree
from cpython.pyport cimport PY_SSIZE_T_MAX
from libc.string cimport memcpy
from libc.stdint cimport uint64_t, int64_t

from _philox cimport philox_pos, pos_init, fill_bounded
from _samplers cimport noreplace_work_size
from _permute cimport (epoch_cursor, epoch_start, epoch_fill, mb_perm_digit, EPOCHS_OFF,
                       EPOCHS_WRAP, EPOCHS_SHORT)
from mbcore._kernels._plan cimport (mb_axis, mb_plan, MB_MAXDIMS, plan_scratch_size,
                                    draw_plan_indices, same_streams, gather_nd)
from mbcore._kernels cimport _dispatch
from mbcore._kernels._dispatch cimport (mb_threads, mb_prefetch, prefetch_pick, prefetch_record,
                                        auto_prefetch, prefetch_for, moves_for,
                                        threads_decide, threads_record, batch_ps, gil_ps,
                                        GIL_KEEP_PCT)
from mbcore._kernels._pool cimport pool_run, MB_POOL_MAX

cnp.import_array()

cdef extern from "mb_measure.h":
    int64_t mb_now_ns() noexcept nogil

cdef extern from "numpy/arrayobject.h":
    # numpy's __init__.pxd leaves this out; the descr reference is stolen.
    object PyArray_Empty(int nd, cnp.npy_intp *dims, cnp.dtype descr, int fortran)


cdef enum:
    MB_CHUNK = 256       # indices drawn ahead of the copy in the fused loop
    MB_SMALL_SCRATCH = 512   # int64 of index scratch on the stack; more: _scratch
    MB_MAX_GROUP = 32    # arrays one draw_group call gathers with one draw


# ---------------------------------------------------------------- drawing

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
    bint moves             # short rows by 16-byte moves, moves_for(p[0])
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
                          g.count, g.idx + a.m, g.prefetch, g.moves)
            else:
                gather_nd(p, g.src[i], g.dst[i], NULL, 0, g.idx, g.prefetch, g.moves)
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
                      g.prefetch, g.moves)
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
cdef enum:
    SHARE_CHUNKS = 16
    SHARE_MIN_CHUNK = 64


cdef void draw_gather_k(int k, const mb_plan **p, const char **src, char **dst,
                        uint64_t step, int64_t *scratch, int nthreads) noexcept nogil:
    """Draw batch ``step`` of k arrays whose plans share their streams
    (same_streams with p[0]) and gather each into its dst.

    ``scratch`` holds ``plan_scratch_size(p[0])`` int64 (may be NULL when
    that is 0).  Fused plans (only axis 0 sampled, with replacement) draw as
    they copy; others draw every index into scratch first; either way the
    indices are drawn once for all k arrays.  The batch runs on
    threads_decide (at most ``nthreads``) threads, at the prefetch distance
    of prefetch_pick(p[0]), its short rows copied by moves_for(p[0])'s loop
    unless prefetch_pick's re-check tries the other (either may ask for the
    batch's time, for the thread choice or its cell's re-check):
    with more than one, it is cut along axis 0 into SHARE_CHUNKS chunks a
    thread that this thread and pool workers claim in turn (pool_run; each
    draw is addressable, so a fused chunk draws its own indices, positions
    [c * chunk, (c + 1) * chunk) of the stream).
    """
    cdef gather_job job
    cdef const mb_axis *a = &p[0].ax[0]
    cdef int64_t nbytes = 0, t0 = 0
    cdef int i
    cdef mb_threads tr
    cdef mb_prefetch pf
    job.k = k
    job.p = p
    job.src = src
    job.dst = dst
    job.idx = NULL
    job.step = step
    job.start = 0
    job.count = a.m
    job.moves = moves_for(p[0], src[0])
    job.scratch = scratch
    tr.n = 1
    tr.cls = -1
    if nthreads > 1 and a.sampled:
        for i in range(k):
            nbytes += p[i].row_out * a.m
        threads_decide(p[0], src[0], nbytes, nthreads, &tr)
    nthreads = tr.n
    # A thread try is not counted by the prefetch re-check.
    prefetch_pick(p[0], src[0], tr.cls < 0, &pf)
    job.prefetch = pf.ahead
    if pf.moves >= 0:
        job.moves = pf.moves                  # a re-check's loop
    if tr.cls >= 0 or pf.cell >= 0:
        t0 = mb_now_ns()
    i = run_batch(&job, nthreads)
    if tr.cls >= 0 or pf.cell >= 0:
        t0 = mb_now_ns() - t0
        if i == nthreads:                     # not when the pool was busy
            if tr.cls >= 0:
                threads_record(&tr, t0)
            if pf.cell >= 0:
                if nbytes == 0:
                    for i in range(k):
                        nbytes += p[i].row_out * a.m
                prefetch_record(&pf, t0, nbytes, nthreads)


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
            return 1 + pool_run(run_chunk, &shared, (a.m + shared.chunk - 1) // shared.chunk,
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
    return (<size_t>&s.plan, plan_scratch_size(&s.plan), <size_t>&_dispatch.max_threads)


# ---------------------------------------------------------------- wrapper

MAX_THREADS = MB_POOL_MAX + 1


def get_num_threads():
    """get_num_threads(): the most threads one batch may use."""
    return _dispatch.max_threads


def set_num_threads(int n):
    """set_num_threads(n)

    Use at most n threads (1 to MAX_THREADS) for one batch: the caller and
    n - 1 pool workers.  Returns the old value.  ``mbcore.set_num_threads``
    is the public entry point.
    """
    if n < 1 or n > MB_POOL_MAX + 1:
        raise ValueError(f"n must be 1 to {MB_POOL_MAX + 1}, got {n}")
    old = _dispatch.max_threads
    _dispatch.max_threads = n
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
        ``b`` (its size in ``sizes``, which world must divide).

    Attributes
    ----------
    step : int
        The step the next call of ``next`` draws.
    """
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
        if self.shard is not None and (self.shard[1] < 1 or not 0 <= self.shard[0] < self.shard[1]):
            raise ValueError(f"shard must be (rank, world) with 0 <= rank < world, got {shard!r}")
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
                if not replace and not epochs:    # a shard past 0: off + m draws, kept
                    self.plan.nwork = max(self.plan.nwork, noreplace_work_size(a.n, a.off + a.m)
                                          + (a.off + a.m if a.off else 0))
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
        self.gil_gen = _dispatch.cal_gen
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
        nthreads = _dispatch.max_threads
        scratch = self._scratch(plan_scratch_size(&self.plan), small, &how)
        if self.gil_gen != _dispatch.cal_gen:
            self._estimate()
        if (_dispatch.forced_gil < 0 and self.keep_gil) or _dispatch.forced_gil == 1:
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
    cdef int64_t nbytes = 0
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
        if nbytes:           # batches of no bytes: nothing to draw
            nthreads = _dispatch.max_threads
            scratch = first._scratch(plan_scratch_size(&first.plan), small, &how)
            with nogil:
                draw_gather_k(<int>k, plans, srcs, dsts, step, scratch, nthreads)
            first._scratch_release(scratch, how)
    for i in range(k):
        if dst[i] is not res[i]:
            memcpy(cnp.PyArray_DATA(<cnp.ndarray>res[i]), cnp.PyArray_DATA(<cnp.ndarray>dst[i]),
                   (<Sampler>samplers[i]).out_bytes)
    return tuple(res)
