# cython: language_level=3
"""A plan's indices and its walk: ``draw_plan_indices`` draws every sampled
axis' indices of a batch, ``gather_nd`` copies the outer product they
select (one axis: the rows; several: an odometer over the outer axes and
contiguous runs of the inner ones).  ``nogil`` workers on byte strides,
cimported by the batch runner (``_gather.pyx``) and by the calibration that
times walks (``_dispatch.pyx``).
"""
from libc.stdint cimport uint64_t, int64_t
from libc.string cimport memcpy

from _philox cimport philox_pos, pos_init, fill_bounded
from _samplers cimport sample_noreplace
from _permute cimport fill_epoch
from mbcore._kernels._copy cimport copy_run, copy_rows_of, prefetch_block


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
                    const int64_t *idx, int prefetch, bint moves) noexcept nogil:
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
    are prefetched; a second odometer walks ahead of the first.  ``moves``:
    rows (blocks) of 16 to 272 bytes are copied by 16-byte moves rather
    than memcpy (the batch's choice, calibrated per row size).
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
        copy_rows_of(dst, src, ix[0], p.ax[0].stride, m[0], p.block, prefetch, moves)
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
                 p.block, moves)
        dst += m[last] * p.block
        if not odo_next(&o, p, ix, m, last):
            return


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
        elif a.off:     # a shard: the global draw's first off + m, its last m
            sample_noreplace(a.key0, a.key1, a.sid, step, a.n, a.off + a.m, work,
                             work + a.off + a.m)
            memcpy(idx, work + a.off, a.m * sizeof(int64_t))
        else:
            sample_noreplace(a.key0, a.key1, a.sid, step, a.n, a.m, idx, work)
        idx += a.m


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
