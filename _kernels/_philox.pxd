# cython: language_level=3
"""Counter-based Philox4x64-10 streams and exactly uniform bounded integers.

Everything here is ``noexcept nogil`` and inline, so that the gather kernels in
``_gather.pyx`` draw and copy in one loop without a function call per index.

Stream layout
-------------
Block ``j`` of the stream for (key, stream id ``s``, step ``t``) is::

    philox4x64_10(counter=(j, t, s, 0), key=(key0, key1))

which is the output NumPy's ``Philox(key=key, counter=(j, t, s, 0) - 1)`` gives
for its first four ``random_raw()`` values (NumPy increments the counter before
each block).  Words are consumed in order; a 32-bit draw takes the low half of
a word first, then the high half (as NumPy's ``next_uint32`` does).
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
    #if defined(__GNUC__) || defined(__clang__)
    #define MB_PREFETCH(p) __builtin_prefetch((p), 0, 0)
    #define MB_LIKELY(x) __builtin_expect(!!(x), 1)
    #else
    #define MB_PREFETCH(p) ((void)(p))
    #define MB_LIKELY(x) (x)
    #endif
    """
    uint64_t mb_mulhilo64(uint64_t a, uint64_t b, uint64_t *hi) noexcept nogil
    void MB_PREFETCH(const void *p) noexcept nogil
    bint MB_LIKELY(bint x) noexcept nogil


# Philox4x64 constants (Salmon et al. 2011, Random123).
cdef enum:
    PHILOX_BLOCK = 4


cdef struct philox_stream:
    uint64_t key0
    uint64_t key1
    uint64_t ctr0          # block index j inside the batch
    uint64_t ctr1          # step t
    uint64_t ctr2          # stream id s (axis position)
    uint64_t buf[4]
    int pos                # next unread 32-bit half in buf, 0..8


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


cdef inline void stream_init(philox_stream *st, uint64_t key0, uint64_t key1,
                             uint64_t step, uint64_t sid) noexcept nogil:
    st.key0 = key0
    st.key1 = key1
    st.ctr0 = 0
    st.ctr1 = step
    st.ctr2 = sid
    st.pos = 8


cdef inline void stream_refill(philox_stream *st) noexcept nogil:
    cdef uint64_t c[4]
    c[0] = st.ctr0
    c[1] = st.ctr1
    c[2] = st.ctr2
    c[3] = 0
    philox4x64_10(c, st.key0, st.key1, st.buf)
    st.ctr0 += 1
    st.pos = 0


cdef inline uint64_t stream_next64(philox_stream *st) noexcept nogil:
    # A 64-bit draw starts on a word boundary: a pending high half is skipped.
    cdef int w = (st.pos + 1) >> 1
    if w >= 4:
        stream_refill(st)
        w = 0
    st.pos = 2 * w + 2
    return st.buf[w]


cdef inline uint32_t stream_next32(philox_stream *st) noexcept nogil:
    if st.pos >= 8:
        stream_refill(st)
    cdef uint64_t w = st.buf[st.pos >> 1]
    cdef uint32_t r = <uint32_t>(w >> (32 * (st.pos & 1)))
    st.pos += 1
    return r


cdef inline uint64_t bounded32(philox_stream *st, uint32_t n) noexcept nogil:
    """Lemire (2019) nearly-divisionless draw in [0, n), 0 < n <= 2**32 - 1."""
    cdef uint64_t m = <uint64_t>stream_next32(st) * n
    cdef uint32_t l = <uint32_t>m
    cdef uint32_t t
    if l < n:
        t = (<uint32_t>(-n)) % n
        while l < t:
            m = <uint64_t>stream_next32(st) * n
            l = <uint32_t>m
    return m >> 32


cdef inline uint64_t bounded64(philox_stream *st, uint64_t n) noexcept nogil:
    """Lemire (2019) nearly-divisionless draw in [0, n), 0 < n < 2**64."""
    cdef uint64_t hi
    cdef uint64_t l = mb_mulhilo64(stream_next64(st), n, &hi)
    cdef uint64_t t
    if l < n:
        t = (<uint64_t>(-n)) % n
        while l < t:
            l = mb_mulhilo64(stream_next64(st), n, &hi)
    return hi


cdef inline uint64_t bounded(philox_stream *st, uint64_t n) noexcept nogil:
    """Exactly uniform integer in [0, n); 32-bit draws while n fits in them."""
    if n <= 0xFFFFFFFFULL:
        return bounded32(st, <uint32_t>n)
    return bounded64(st, n)


