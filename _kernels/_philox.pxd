# cython: language_level=3
"""Counter-based Philox4x64-10 draws and exactly uniform bounded integers.

Everything here is ``noexcept nogil`` and inline, so that the gather kernels
(``_gather.pyx``, ``_plan.pyx``) draw and copy in one loop without a function
call per index.  The Philox blocks themselves are C (``mb_philox.h``, and
``mb_philox_simd.h`` for the vector levels).

Stream layout
-------------
A stream is keyed by a 128-bit Philox key (from the seed) and identified by
(step ``t``, stream id ``s`` = axis position).  Draw number ``p`` of a stream
is a pure function of (key, t, s, p): any draw can be computed directly, so
one batch splits across threads and any step is O(1) to reach.

- A 32-bit draw ``p`` (used while the bound n <= 2**32 - 1) is half ``p % 8``
  of block ``p // 8`` of lane 0; halves run low then high within a word.
- A 64-bit draw ``p`` (bound n >= 2**32) is word ``p % 4`` of block ``p // 4``
  of lane 1.
- Block ``j`` of lane ``c`` is ``philox4x64_10(counter=(j, t, s, c), key)``,
  i.e. what NumPy's ``Philox(key=key, counter=(j, t, s, c) - 1)`` returns for
  its first four ``random_raw()`` values (NumPy increments before each block).
- Lemire's method maps a draw to [0, n) exactly: it is rejected when the low
  half of ``draw * n`` is below ``2**w mod n`` (w = 32 or 64), with
  probability below n / 2**w.  The r-th replacement (r = 0, 1, ...) of draw
  ``p`` is word 0 (its low half for 32-bit draws) of block
  ``(p, t, s, 2 + r)``.
"""
from libc.stdint cimport uint32_t, uint64_t, int64_t

from mbcore._kernels cimport _simd
from mbcore._kernels._simd cimport mb_simd_detect, simd_switch

cdef extern from "mb_philox.h":
    uint64_t mb_mulhilo64(uint64_t a, uint64_t b, uint64_t *hi) noexcept nogil
    void philox4x64_10 "mb_philox4x64_10"(const uint64_t *c, uint64_t k0, uint64_t k1,
                                          uint64_t *out) noexcept nogil
    void mb_philox4x64_10_x4(uint64_t j, uint64_t c1, uint64_t c2, uint64_t c3,
                             uint64_t k0, uint64_t k1, uint64_t *out) noexcept nogil


cdef extern from "mb_philox_simd.h":
    int mb_fill32_simd(int level, uint64_t j, uint64_t c1, uint64_t c2, uint64_t c3,
                       uint64_t k0, uint64_t k1, int nb, uint32_t n, uint32_t t,
                       uint64_t *words, int64_t *out) noexcept nogil


cdef inline int mb_simd_get() noexcept nogil:
    """The process's vector level (``_simd.pxd``), which every draw uses."""
    return _simd.level


cdef inline void mb_simd_set(int level) noexcept nogil:
    """Set the process's vector level, for every module at once."""
    _simd.level = level


cdef enum:
    # Blocks computed per refill (two interleaved pairs, mb_philox4x64_10_x4).
    PHILOX_WAYS = 4
    PHILOX_WORDS = 16      # PHILOX_WAYS * 4: one group
    PHILOX_HALVES = 32


cdef struct philox_pos:
    uint64_t key0
    uint64_t key1
    uint64_t step
    uint64_t sid
    uint64_t group         # cached group (4 blocks) ...
    uint64_t lane          # ... of this lane
    bint valid
    uint64_t buf[16]       # PHILOX_WORDS


cdef inline void pos_init(philox_pos *s, uint64_t key0, uint64_t key1,
                          uint64_t step, uint64_t sid) noexcept nogil:
    s.key0 = key0
    s.key1 = key1
    s.step = step
    s.sid = sid
    s.group = 0
    s.lane = 0
    s.valid = False


cdef inline void pos_load(philox_pos *s, uint64_t group, uint64_t lane) noexcept nogil:
    """Make s.buf hold group ``group`` (blocks 4g .. 4g+3) of ``lane``."""
    if s.valid and s.group == group and s.lane == lane:
        return
    mb_philox4x64_10_x4(group * PHILOX_WAYS, s.step, s.sid, lane, s.key0, s.key1, s.buf)
    s.group = group
    s.lane = lane
    s.valid = True


cdef inline uint64_t retry_word(const philox_pos *s, uint64_t p, uint64_t r) noexcept nogil:
    """Word 0 of block (p, t, s, 2 + r): the r-th replacement of draw p."""
    cdef uint64_t c[4]
    cdef uint64_t out[4]
    c[0] = p
    c[1] = s.step
    c[2] = s.sid
    c[3] = 2 + r
    philox4x64_10(c, s.key0, s.key1, out)
    return out[0]


cdef inline uint64_t lemire32_retry(const philox_pos *s, uint64_t p, uint32_t n,
                                    uint32_t t) noexcept nogil:
    """Draw p was rejected: Lemire on its replacements until one is kept."""
    cdef uint64_t r = 0, prod
    while True:
        prod = (retry_word(s, p, r) & 0xFFFFFFFFULL) * n
        if <uint32_t>prod >= t:
            return prod >> 32
        r += 1


cdef inline uint64_t bounded_at(philox_pos *s, uint64_t p, uint64_t n) noexcept nogil:
    """Exactly uniform integer in [0, n) from draw p, 0 < n < 2**64."""
    cdef uint64_t v, prod, hi, lo, t, r
    cdef uint32_t n32, t32
    if n <= 0xFFFFFFFFULL:
        n32 = <uint32_t>n
        pos_load(s, p >> 5, 0)
        v = (s.buf[(p & 31) >> 1] >> (32 * (p & 1))) & 0xFFFFFFFFULL
        prod = v * n32
        if <uint32_t>prod < n32:
            t32 = (<uint32_t>(-n32)) % n32
            if <uint32_t>prod < t32:
                return lemire32_retry(s, p, n32, t32)
        return prod >> 32
    pos_load(s, p >> 4, 1)
    lo = mb_mulhilo64(s.buf[p & 15], n, &hi)
    if lo < n:
        t = (<uint64_t>(-n)) % n
        r = 0
        while lo < t:
            lo = mb_mulhilo64(retry_word(s, p, r), n, &hi)
            r += 1
    return hi


cdef inline void fill_bounded(philox_pos *s, uint64_t start, uint64_t n,
                              int64_t *out, int64_t m) noexcept nogil:
    """out[k] = bounded_at(s, start + k, n) for k < m, a group at a time.

    For n < 2**32 the loop walks a group's 16 words two draws at a time with
    no per-draw buffer bookkeeping, or, with a vector level (mb_philox_simd.h)
    and from a block boundary, makes 16 (or 8) blocks at once and Lemire's
    products 8 (AVX-512) or 4 words at a time.
    """
    cdef uint64_t p = start, stop = start + <uint64_t>m, g, end, q, w, lo, hi
    cdef uint32_t n32, t
    cdef uint64_t *buf = s.buf
    cdef uint64_t words[64]
    cdef int nb, simd = mb_simd_get()
    cdef int64_t *o = out - <int64_t>start
    if n > 0xFFFFFFFFULL:
        while p < stop:
            o[p] = <int64_t>bounded_at(s, p, n)
            p += 1
        return
    n32 = <uint32_t>n
    t = (<uint32_t>(-n32)) % n32
    # The vector levels, measured on the module's build: next(mb) with
    # _simd("scalar") / "avx2" / "avx512", each with its own Minibatch and
    # seed, shuffled in one process, three measurements; time scalar / level:
    #   1e4 x 1, b=128:    AVX2 1.37x   AVX-512 1.47-1.49x
    #   1e5 x 10, b=128:   1.09-1.14x   1.13-1.21x
    #   1e6 x 1, b=1e5:    1.24-1.39x   1.51-1.79x
    #   1e7 x 1, b=1e5:    1.05-1.19x   1.15-1.16x
    #   1e6 x 10, b=1024:  1.06-1.10x   1.07-1.12x
    #   one row (the scalar path at every level): 0.99-1.00x
    while p < stop:
        if simd and (p & 7) == 0 and stop - p >= 64:
            nb = 16 if stop - p >= 128 else 8
            if mb_fill32_simd(simd, p >> 3, s.step, s.sid, 0, s.key0, s.key1, nb, n32, t,
                              words, o + p):
                for q in range(p, p + 8 * <uint64_t>nb):   # redraw the rejected
                    lo = ((words[(q - p) >> 1] >> (32 * (q & 1))) & 0xFFFFFFFFULL) * n32
                    if <uint32_t>lo < t:
                        o[q] = <int64_t>lemire32_retry(s, q, n32, t)
            p += 8 * <uint64_t>nb
            continue
        g = p >> 5
        pos_load(s, g, 0)
        end = (g + 1) << 5
        if end > stop:
            end = stop
        if (p & 1) and p < end:           # odd start: the high half alone
            hi = (buf[(p & 31) >> 1] >> 32) * n32
            o[p] = <int64_t>((hi >> 32) if <uint32_t>hi >= t else lemire32_retry(s, p, n32, t))
            p += 1
        q = p
        while q + 1 < end:                # both halves of a word
            w = buf[(q & 31) >> 1]
            lo = (w & 0xFFFFFFFFULL) * n32
            hi = (w >> 32) * n32
            o[q] = <int64_t>(lo >> 32)
            o[q + 1] = <int64_t>(hi >> 32)
            if <uint32_t>lo < t:
                o[q] = <int64_t>lemire32_retry(s, q, n32, t)
            if <uint32_t>hi < t:
                o[q + 1] = <int64_t>lemire32_retry(s, q + 1, n32, t)
            q += 2
        if q < end:                       # a last low half
            lo = (buf[(q & 31) >> 1] & 0xFFFFFFFFULL) * n32
            o[q] = <int64_t>((lo >> 32) if <uint32_t>lo >= t else lemire32_retry(s, q, n32, t))
            q += 1
        p = end
