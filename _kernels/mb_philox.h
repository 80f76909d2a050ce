/* Philox4x64-10 in plain C: its constants, one round, and the scalar blocks
 * (one, two interleaved, four).  Every Philox in mbcore is made from these:
 * _philox.pxd's draws, the vector blocks of mb_philox_simd.h (which take the
 * constants from here) and the epoch round keys of _permute.pxd.
 */
#ifndef MB_PHILOX_H
#define MB_PHILOX_H

#include <stdint.h>

/* The round multipliers and the Weyl increments of the key. */
#define MB_PHILOX_M0 0xD2E7470EE14C6C93ULL
#define MB_PHILOX_M1 0xCA5A826395121157ULL
#define MB_PHILOX_W0 0x9E3779B97F4A7C15ULL
#define MB_PHILOX_W1 0xBB67AE8584CAA73BULL

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

/* One Philox round on the words x0..x3 with round key (k0, k1). */
#define MB_PHILOX_ROUND(x0, x1, x2, x3, k0, k1) do { \
    uint64_t hi0_, hi1_, lo0_, lo1_; \
    lo0_ = mb_mulhilo64(MB_PHILOX_M0, x0, &hi0_); \
    lo1_ = mb_mulhilo64(MB_PHILOX_M1, x2, &hi1_); \
    x0 = hi1_ ^ x1 ^ (k0); x2 = hi0_ ^ x3 ^ (k1); x1 = lo1_; x3 = lo0_; } while (0)

/* One block: ten rounds on counter c under key (k0, k1). */
static inline void mb_philox4x64_10(const uint64_t *c, uint64_t k0, uint64_t k1,
                                    uint64_t *out) {
    uint64_t x0 = c[0], x1 = c[1], x2 = c[2], x3 = c[3];
    int r;
    for (r = 0; r < 10; r++) {
        if (r) { k0 += MB_PHILOX_W0; k1 += MB_PHILOX_W1; }
        MB_PHILOX_ROUND(x0, x1, x2, x3, k0, k1);
    }
    out[0] = x0; out[1] = x1; out[2] = x2; out[3] = x3;
}

/* Two blocks, counters (j+b, c1, c2, c3), b = 0..1, with the two chains'
   rounds interleaved: one chain alone waits on its 10 serial multiply
   rounds; two fill the pipeline and, with the key, fit in the 16 general
   registers.  Four interleaved chains spilled to the stack: 5.0 -> 4.25,
   5.0 -> 2.5 and 4.6 -> 3.9 ns per drawn index in three alternating runs
   (AMD EPYC Zen 4).  Plain C with scalar locals: a Cython version with a
   4x4 array was kept in memory by gcc. */
static inline void mb_philox4x64_10_x2(uint64_t j, uint64_t c1, uint64_t c2,
                                       uint64_t c3, uint64_t k0, uint64_t k1,
                                       uint64_t *out) {
    uint64_t a0 = j, a1 = c1, a2 = c2, a3 = c3;
    uint64_t b0 = j + 1, b1 = c1, b2 = c2, b3 = c3;
    int r;
    for (r = 0; r < 10; r++) {
        if (r) { k0 += MB_PHILOX_W0; k1 += MB_PHILOX_W1; }
        MB_PHILOX_ROUND(a0, a1, a2, a3, k0, k1);
        MB_PHILOX_ROUND(b0, b1, b2, b3, k0, k1);
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

#endif
