# cython: language_level=3
"""Counter-based Philox4x64-10 draws and exactly uniform bounded integers.

Everything here is ``noexcept nogil`` and inline, so that the gather kernels in
``_gather.pyx`` draw and copy in one loop without a function call per index.

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

cdef extern from *:
    """
    #include <stdint.h>
    /* 64x64 -> 128 bit multiply; __int128 where the compiler has it. */
    #if defined(__SIZEOF_INT128__)
    static inline uint64_t mb_mulhilo64(uint64_t a, uint64_t b, uint64_t *hi) {
        __uint128_t p = (__uint128_t)a * (__uint128_t)b;
        *hi = (uint64_t)(p >> 64);
        return (uint64_t)p;
    }
    #elif defined(_MSC_VER) && defined(_M_X64)
    #include <intrin.h>
    static inline uint64_t mb_mulhilo64(uint64_t a, uint64_t b, uint64_t *hi) {
        return _umul128(a, b, hi);
    }
    #else
    static inline uint64_t mb_mulhilo64(uint64_t a, uint64_t b, uint64_t *hi) {
        uint64_t a_lo = (uint32_t)a, a_hi = a >> 32, b_lo = (uint32_t)b, b_hi = b >> 32;
        uint64_t p0 = a_lo * b_lo, p1 = a_lo * b_hi, p2 = a_hi * b_lo, p3 = a_hi * b_hi;
        uint64_t mid = (p0 >> 32) + (uint32_t)p1 + (uint32_t)p2;
        *hi = p3 + (p1 >> 32) + (p2 >> 32) + (mid >> 32);
        return (mid << 32) | (uint32_t)p0;
    }
    #endif
    /* Two Philox4x64-10 blocks, counters (j+b, c1, c2, c3), b = 0..1, with
       the two chains' rounds interleaved: one chain alone waits on its 10
       serial multiply rounds; two fill the pipeline and, with the key, fit
       in the 16 general registers.  Four interleaved chains (the previous
       version) spilled to the stack: 5.0 -> 4.25, 5.0 -> 2.5 and 4.6 -> 3.9
       ns per drawn index in three alternating runs.  Plain C with scalar
       locals: a Cython version with a 4x4 array was kept in memory by gcc. */
    #define MB_PHILOX_ROUND(x0, x1, x2, x3) do { \
        uint64_t hi0_, hi1_, lo0_, lo1_; \
        lo0_ = mb_mulhilo64(0xD2E7470EE14C6C93ULL, x0, &hi0_); \
        lo1_ = mb_mulhilo64(0xCA5A826395121157ULL, x2, &hi1_); \
        x0 = hi1_ ^ x1 ^ k0; x2 = hi0_ ^ x3 ^ k1; x1 = lo1_; x3 = lo0_; } while (0)
    static inline void mb_philox4x64_10_x2(uint64_t j, uint64_t c1, uint64_t c2,
                                           uint64_t c3, uint64_t k0, uint64_t k1,
                                           uint64_t *out) {
        uint64_t a0 = j, a1 = c1, a2 = c2, a3 = c3;
        uint64_t b0 = j + 1, b1 = c1, b2 = c2, b3 = c3;
        int r;
        for (r = 0; r < 10; r++) {
            if (r) { k0 += 0x9E3779B97F4A7C15ULL; k1 += 0xBB67AE8584CAA73BULL; }
            MB_PHILOX_ROUND(a0, a1, a2, a3);
            MB_PHILOX_ROUND(b0, b1, b2, b3);
        }
        out[0] = a0; out[1] = a1; out[2] = a2; out[3] = a3;
        out[4] = b0; out[5] = b1; out[6] = b2; out[7] = b3;
    }
    /* Four blocks (a group), counters (j+b, c1, c2, c3), b = 0..3. */
    static inline void mb_philox4x64_10_x4(uint64_t j, uint64_t c1, uint64_t c2,
                                           uint64_t c3, uint64_t k0, uint64_t k1,
                                           uint64_t *out) {
        mb_philox4x64_10_x2(j, c1, c2, c3, k0, k1, out);
        mb_philox4x64_10_x2(j + 2, c1, c2, c3, k0, k1, out + 8);
    }
    #if defined(__GNUC__) || defined(__clang__)
    #define MB_PREFETCH(p) __builtin_prefetch((p), 0, 0)
    #define MB_LIKELY(x) __builtin_expect(!!(x), 1)
    #else
    #define MB_PREFETCH(p) ((void)(p))
    #define MB_LIKELY(x) (x)
    #endif
    """
    uint64_t mb_mulhilo64(uint64_t a, uint64_t b, uint64_t *hi) noexcept nogil
    void mb_philox4x64_10_x4(uint64_t j, uint64_t c1, uint64_t c2, uint64_t c3,
                             uint64_t k0, uint64_t k1, uint64_t *out) noexcept nogil
    void MB_PREFETCH(const void *p) noexcept nogil
    bint MB_LIKELY(bint x) noexcept nogil


cdef extern from "mb_philox_simd.h":
    int mb_simd_detect() noexcept nogil
    int mb_simd_get() noexcept nogil
    void mb_simd_set(int level) noexcept nogil
    int mb_fill32_simd(uint64_t j, uint64_t c1, uint64_t c2, uint64_t c3,
                       uint64_t k0, uint64_t k1, int nb, uint32_t n, uint32_t t,
                       uint64_t *words, int64_t *out) noexcept nogil


cdef inline object simd_switch(level):
    """The ``_simd`` hook of the modules that draw (tests and benchmarks):
    set this module's vector level ("scalar", "avx2", "avx512") if level is
    not None, refusing one the CPU lacks ("auto": the widest it has), and
    return the old level's name.  The draws do not depend on it."""
    cdef list names = ["scalar", "avx2", "avx512"]
    old = names[mb_simd_get()]
    if level is None:
        return old
    if level == "auto":
        mb_simd_set(mb_simd_detect())
        return old
    if level not in names:
        raise ValueError(f"level must be one of {names + ['auto']} or None, got {level!r}")
    if names.index(level) > mb_simd_detect():
        raise ValueError(f"level {level!r} is not supported here: this CPU has "
                         f"{names[mb_simd_detect()]!r} at most")
    mb_simd_set(names.index(level))
    return old


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


cdef inline void philox4x64_10(uint64_t c[4], uint64_t k0, uint64_t k1,
                               uint64_t out[4]) noexcept nogil:
    """philox4x64_10(c, k0, k1, out): ten Philox rounds on counter c."""
    cdef uint64_t x0 = c[0], x1 = c[1], x2 = c[2], x3 = c[3]
    cdef uint64_t hi0, hi1, lo0, lo1
    cdef int r
    for r in range(10):
        if r:
            k0 += 0x9E3779B97F4A7C15ULL
            k1 += 0xBB67AE8584CAA73BULL
        lo0 = mb_mulhilo64(0xD2E7470EE14C6C93ULL, x0, &hi0)
        lo1 = mb_mulhilo64(0xCA5A826395121157ULL, x2, &hi1)
        x0 = hi1 ^ x1 ^ k0
        x1 = lo1
        x2 = hi0 ^ x3 ^ k1
        x3 = lo0
    out[0] = x0
    out[1] = x1
    out[2] = x2
    out[3] = x3


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
            if mb_fill32_simd(p >> 3, s.step, s.sid, 0, s.key0, s.key1, nb, n32, t,
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
