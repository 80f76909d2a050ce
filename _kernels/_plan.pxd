# cython: language_level=3
"""The plan of a Sampler: per axis its length, output length, byte stride
and stream; what a batch of it draws (its indices) and how it is walked
(``gather_nd``, in ``_plan.pyx``)."""
from libc.stdint cimport uint64_t, int64_t


cdef enum:
    MB_MAXDIMS = 64      # NPY_MAXDIMS of NumPy 2 (NumPy 1.x has 32)


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


cdef inline int64_t plan_span(const mb_plan *p) noexcept nogil:
    """Bytes the plan's source spans (its rows' extent)."""
    cdef int64_t span = p.block
    cdef int k
    for k in range(p.nouter):
        span += (p.ax[k].stride if p.ax[k].stride >= 0 else -p.ax[k].stride) * (p.ax[k].n - 1)
    return span


cdef inline int64_t plan_scratch_size(const mb_plan *p) noexcept nogil:
    """int64 entries of scratch that draw_gather needs (0: none)."""
    if p.fused:
        return 0
    return p.nidx + p.nwork


cdef void draw_plan_indices(const mb_plan *p, uint64_t step, int64_t *idx,
                            int64_t *work) noexcept nogil
cdef bint same_streams(const mb_plan *a, const mb_plan *b) noexcept nogil
cdef void gather_nd(const mb_plan *p, const char *src, char *dst,
                    const int64_t *idx0, int64_t m0,
                    const int64_t *idx, int prefetch, bint moves) noexcept nogil
