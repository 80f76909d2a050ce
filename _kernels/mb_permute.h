/* A keyed bijection of [0, n), 1 <= n < 2**63: the epoch permutations.
 *
 * Construction
 * ------------
 * A mixed-radix, alternating Feistel network (the structure of NIST SP
 * 800-38G's FF1, with a fast integer mixer in place of AES).  With b at
 * or just above sqrt(n) (mb_perm_digit) and a = ceil(n / b), a position
 * x < a*b is the pair of digits L = x / b in [0, a) and R = x % b in
 * [0, b).  Round r (r = 0, 1,
 * ...) adds a keyed function of one digit to the other:
 *     r even:  L = (L + F(K_r, R) mod a) mod a
 *     r odd:   R = (R + F(K_r, L) mod b) mod b
 * Each round is a bijection of [0, a) x [0, b) (a translation of one digit
 * for each value of the other), so the network is one for any F.  Cycle
 * walking makes it a bijection of [0, n): a result in [n, a*b) is mapped
 * again until it falls below n (the cycle through x < n holds x, so this
 * ends).  a*b - n < b, and b is chosen among up to 32 candidates to make
 * it small, so few positions walk at all (under 1 / a; none when n factors
 * near its root): about one network evaluation a position for every n,
 * where a power-of-two domain needs up to two on average.
 *
 * F is a keyed integer mixer with a 64-bit round key K, its top half
 * scaled to the digit's range ((f * M) >> h):
 *   n <= 2**32: 32-bit lanes (digits up to 2**16), the "lowbias32" mixer
 *     (two multiplies and the xor-shift between them), the key's low word
 *     xored into the input and its high word added after the first
 *     multiply;
 *   n > 2**32: 64-bit lanes (digits up to 2**32), the SplitMix64 finaliser
 *     with the key xored into the input and added (rotated by 32) after the
 *     first multiply.
 * A block of positions is evaluated round by round over the block, each
 * round a loop over lanes, compiled for AVX-512, AVX2 and plain x86-64
 * (function target attributes, as mb_philox_simd.h) and chosen at run time
 * by the caller's level; the values do not depend on the level.  Measured
 * in a standalone C loop (AMD EPYC Zen 5, 2 vCPUs shared, best of 200
 * fills of 8192 positions), n = 1e6, ns a position for 4 / 8 / 12 rounds:
 * AVX-512 0.42 / 0.70 / 1.01, AVX2 0.92 / 1.50 / 2.08, plain 4.2 / 7.5 /
 * 11.0 (no 32-bit vector multiply below SSE4.1: the plain level is
 * scalar); n = 1e10 (64-bit lanes), 8 rounds, AVX-512: 1.59.
 *
 * Rounds: 8, and 16 below n = 128, where the digits are small.  Position
 * counts (row r at position p, chi-square on (n-1)**2 degrees of freedom)
 * over 2e6 epochs found 8 rounds biased at n = 5, 13 and 17 (p below
 * 1e-11) and none at n = 6, 10, 20 to 127, 200 and 256 (p >= 4e-3), and
 * over 1e6 epochs none at 128, 131, 150, 170, 257, 300 and 400 (p >= 5e-3);
 * 16 rounds passed every n from 2 to 19 (1e6 epochs), 5 and 6 rounds fail
 * at n = 5.  On large n, 4 rounds fail the differential tests
 * (tests/test_permute.py) and 5 pass them.
 *
 * The round keys come from the caller (_permute.pxd derives them from the
 * Philox stream of (seed key, axis position, epoch)).
 */
#ifndef MB_PERMUTE_H
#define MB_PERMUTE_H

#include <stdint.h>
#include <string.h>

#define MB_PERM_ROUNDS 8          /* rounds of the epoch permutations ... */
#define MB_PERM_SMALL_N 128        /* ... from this n up; below: */
#define MB_PERM_SMALL_ROUNDS 16
#define MB_PERM_MAX_ROUNDS 32
#define MB_PERM_BLOCK 256          /* positions evaluated per loop of rounds */

typedef struct {
    uint64_t n;                    /* the bijection is of [0, n) */
    uint64_t a, b;                 /* the domain: L in [0, a), R in [0, b) */
    int rounds;
    int wide;                      /* 64-bit lanes (forced on for n > 2**32) */
    uint64_t key[MB_PERM_MAX_ROUNDS];
} mb_perm;

/* The low digit's range b for [0, n): of b0 = ceil(sqrt(n)) and the next
   min(b0 / 2, MB_PERM_DIGIT_TRIES - 1) values (at most 2**16 when
   n <= 2**32, so that the 32-bit lanes' products fit), the one whose
   a*b = ceil(n / b)*b exceeds n least (the first such).  Fewer positions walk: with b0 alone,
   a block of 128 positions at n = 10**4 + 1 (1% of the domain beyond n)
   would walk at least one position 72% of the time, at n = 200 one
   position in 20.  A search of up to 32 divisions: the Sampler makes it
   once, at construction. */
#define MB_PERM_DIGIT_TRIES 32
static inline uint64_t mb_perm_digit(uint64_t n) {
    uint64_t b0 = (uint64_t)__builtin_sqrt((double)n), best, waste, b, hi, w;
    if (b0 > 0xFFFFFFFFULL) b0 = 0xFFFFFFFFULL;
    while (b0 * b0 < n) b0++;
    while (b0 > 1 && (b0 - 1) * (b0 - 1) >= n) b0--;
    if (b0 == 0) b0 = 1;
    /* at most b0 + b0/2, so that a stays above 2/3 b0 */
    hi = b0 + (b0 / 2 < MB_PERM_DIGIT_TRIES - 1 ? b0 / 2 : MB_PERM_DIGIT_TRIES - 1);
    if (n <= ((uint64_t)1 << 32) && hi > ((uint64_t)1 << 16)) hi = (uint64_t)1 << 16;
    best = b0;
    waste = (n + b0 - 1) / b0 * b0 - n;
    for (b = b0 + 1; b <= hi && waste; b++) {
        w = (n + b - 1) / b * b - n;
        if (w < waste) { waste = w; best = b; }
    }
    return best;
}

/* Set up p for [0, n), 1 <= n < 2**63, with the low digit's range b
   (mb_perm_digit(n), or 0 to compute it here) and `rounds` rounds (1 to
   MB_PERM_MAX_ROUNDS; 0: MB_PERM_ROUNDS, or MB_PERM_SMALL_ROUNDS for
   n < MB_PERM_SMALL_N); a = ceil(n / b); 32-bit lanes when n <= 2**32 and
   wide == 0, else 64-bit lanes.  The keys are the caller's to fill. */
static inline void mb_perm_setup(mb_perm *p, uint64_t n, uint64_t b, int rounds, int wide) {
    int k;
    if (b == 0)
        b = mb_perm_digit(n);
    p->n = n;
    p->b = b;
    p->a = (n + b - 1) / b;
    if (rounds <= 0)
        k = n < MB_PERM_SMALL_N ? MB_PERM_SMALL_ROUNDS : MB_PERM_ROUNDS;
    else
        k = rounds > MB_PERM_MAX_ROUNDS ? MB_PERM_MAX_ROUNDS : rounds;
    p->rounds = k;
    p->wide = wide || n > ((uint64_t)1 << 32);
}

static inline uint32_t mb_perm_f32(uint32_t v, uint64_t key) {
    /* lowbias32 without its first xor-shift, which (v < 2**16) would only
       fold the key's constant high bits into the low ones, and without its
       last, x ^= x >> 16, which leaves the top half (all a round uses) as
       it is: 17 vector operations a lane and round went down to 13 */
    uint32_t x = v ^ (uint32_t)key;
    x *= 0x7FEB352DU;
    x += (uint32_t)(key >> 32);
    x ^= x >> 15;
    x *= 0x846CA68BU;
    return x;
}

static inline uint64_t mb_perm_f64(uint64_t v, uint64_t key) {
    uint64_t x = v ^ key;
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ULL;
    x += (key >> 32) | (key << 32);
    x ^= x >> 27;
    x *= 0x94D049BB133111EBULL;
    x ^= x >> 31;
    return x;
}

/* One round on lane i: the digit D (modulus M) += F(other digit) mod M,
   F's top half scaled to [0, M) (M <= 2**16 on 32-bit lanes, 2**32 on
   64-bit ones, so the product fits). */
#define MB_PERM_ROUND(T, F, H, D, O, M, key) do {                             \
        T s_ = D + (T)((((T)F(O, key) >> H) * M) >> H);                       \
        T t_ = s_ - M;                                                        \
        D = t_ < s_ ? t_ : s_;        /* s_ mod M, s_ < 2M */                 \
    } while (0)

/* The rounds on lanes i < m of L and R: rounds outside, lanes inside, so
   that the compiler runs each round over the block in vector registers. */
#define MB_PERM_APPLY_BODY(T, F, H)                                           \
    int r;                                                                    \
    int64_t i;                                                                \
    const T a = (T)p->a, b = (T)p->b;                                         \
    for (r = 0; r < p->rounds; r++) {                                         \
        const uint64_t key = p->key[r];                                       \
        if (r & 1) {                                                          \
            for (i = 0; i < m; i++)                                           \
                MB_PERM_ROUND(T, F, H, R[i], L[i], b, key);                   \
        } else {                                                              \
            for (i = 0; i < m; i++)                                           \
                MB_PERM_ROUND(T, F, H, L[i], R[i], a, key);                   \
        }                                                                     \
    }

static void mb_perm_apply32_base(const mb_perm *p, uint32_t *L, uint32_t *R, int64_t m) {
    MB_PERM_APPLY_BODY(uint32_t, mb_perm_f32, 16)
}
static void mb_perm_apply64_base(const mb_perm *p, uint64_t *L, uint64_t *R, int64_t m) {
    MB_PERM_APPLY_BODY(uint64_t, mb_perm_f64, 32)
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MB_PERM_X86 1
#define MB_PERM_T512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl")))
__attribute__((target("avx2")))
static void mb_perm_apply32_avx2(const mb_perm *p, uint32_t *L, uint32_t *R, int64_t m) {
    MB_PERM_APPLY_BODY(uint32_t, mb_perm_f32, 16)
}
__attribute__((target("avx2")))
static void mb_perm_apply64_avx2(const mb_perm *p, uint64_t *L, uint64_t *R, int64_t m) {
    MB_PERM_APPLY_BODY(uint64_t, mb_perm_f64, 32)
}
MB_PERM_T512
static void mb_perm_apply32_avx512(const mb_perm *p, uint32_t *L, uint32_t *R, int64_t m) {
    MB_PERM_APPLY_BODY(uint32_t, mb_perm_f32, 16)
}
MB_PERM_T512
static void mb_perm_apply64_avx512(const mb_perm *p, uint64_t *L, uint64_t *R, int64_t m) {
    MB_PERM_APPLY_BODY(uint64_t, mb_perm_f64, 32)
}
#endif

/* The network once over the domain [0, a*b), and perm(x) and its inverse
   with cycle walking, at one point on the plain level (the walks of the
   fill, tests, look-ups). */
static inline uint64_t mb_perm_net(const mb_perm *p, uint64_t x, int inverse) {
    uint64_t L = x / p->b, R = x % p->b, a = p->a, b = p->b, f;
    int r, j;
    for (j = 0; j < p->rounds; j++) {
        r = inverse ? p->rounds - 1 - j : j;
        if (p->wide)
            f = mb_perm_f64((r & 1) ? L : R, p->key[r]) >> 32;
        else
            f = mb_perm_f32((uint32_t)((r & 1) ? L : R), p->key[r]) >> 16;
        if (r & 1) {
            f = (f * b) >> (p->wide ? 32 : 16);
            R = inverse ? (R + b - f) % b : (R + f) % b;
        } else {
            f = (f * a) >> (p->wide ? 32 : 16);
            L = inverse ? (L + a - f) % a : (L + f) % a;
        }
    }
    return L * b + R;
}
static inline uint64_t mb_perm_at(const mb_perm *p, uint64_t x) {
    do x = mb_perm_net(p, x, 0); while (x >= p->n);
    return x;
}
static inline uint64_t mb_perm_inv_at(const mb_perm *p, uint64_t y) {
    do y = mb_perm_net(p, y, 1); while (y >= p->n);
    return y;
}

/* out[i] = perm(start + i) for i < m, where start + m <= n: the digits of
   consecutive positions counted up, the rounds run a block at a time, and
   the results in [n, a*b) (under 1 / a of them) gathered and walked on
   together, a block of rounds a step.  Walking them one at a time on the
   plain level took 1.3 us a batch at n = 200, b = 128 (6% walk), against
   0.46 us for the with-replacement batch. */
#define MB_PERM_FILL_BODY(T, APPLY)                                           \
    T L[MB_PERM_BLOCK], R[MB_PERM_BLOCK];                                     \
    int pi[MB_PERM_BLOCK];                                                    \
    const uint64_t n = p->n, b = p->b;                                        \
    T l = (T)(start / b), r = (T)(start % b);                                 \
    while (m > 0) {                                                           \
        int c = m < MB_PERM_BLOCK ? (int)m : MB_PERM_BLOCK, i;                \
        uint64_t y, over = 0;                                                 \
        if (b >= MB_PERM_BLOCK) {             /* one carry at most */         \
            for (i = 0; i < c; i++) {                                         \
                T t_ = r + (T)i, w_ = t_ >= (T)b;                             \
                L[i] = l + w_;                                                \
                R[i] = t_ - (w_ ? (T)b : 0);                                  \
            }                                                                 \
            r += (T)c;                                                        \
            if (r >= (T)b) { r -= (T)b; l++; }                                \
        } else {       /* b < 256, x < 2**16: a float quotient, fixed up */  \
            const float inv_ = 1.0f / (float)b;                               \
            const int32_t x0_ = (int32_t)(l * (T)b + r), bb_ = (int32_t)b;    \
            for (i = 0; i < c; i++) {                                         \
                int32_t x_ = x0_ + i, q_ = (int32_t)((float)x_ * inv_);       \
                int32_t r_ = x_ - q_ * bb_;                                   \
                q_ += (r_ >= bb_) - (r_ < 0);                                 \
                r_ = x_ - q_ * bb_;                                           \
                L[i] = (T)q_;                                                 \
                R[i] = (T)r_;                                                 \
            }                                                                 \
            r += (T)c;                                                        \
            while (r >= (T)b) { r -= (T)b; l++; }                             \
        }                                                                     \
        APPLY(p, L, R, c);                                                    \
        for (i = 0; i < c; i++) {                                             \
            y = (uint64_t)L[i] * b + R[i];                                    \
            out[i] = (int64_t)y;                                              \
            over |= y >= n;                                                   \
        }                                                                     \
        if (over) {                          /* walk the rest on together */ \
            int np = 0, j, k;                                                 \
            for (i = 0; i < c; i++) {                                         \
                pi[np] = i;                                                   \
                np += (uint64_t)out[i] >= n;                                  \
            }                                                                 \
            for (j = 0; j < np; j++) {                                        \
                y = (uint64_t)out[pi[j]];                                     \
                L[j] = (T)(y / b);                                            \
                R[j] = (T)(y % b);                                            \
            }                                                                 \
            while (np) {                                                      \
                APPLY(p, L, R, np);                                           \
                for (j = 0, k = 0; j < np; j++) {                             \
                    y = (uint64_t)L[j] * b + R[j];                            \
                    out[pi[j]] = (int64_t)y;                                  \
                    if (y >= n) {                                             \
                        pi[k] = pi[j];                                        \
                        L[k] = (T)(y / b);                                    \
                        R[k] = (T)(y % b);                                    \
                        k++;                                                  \
                    }                                                         \
                }                                                             \
                np = k;                                                       \
            }                                                                 \
        }                                                                     \
        out += c;                                                             \
        m -= c;                                                               \
    }

static void mb_perm_fill32_base(const mb_perm *p, uint64_t start, int64_t *out,
                                int64_t m) {
    MB_PERM_FILL_BODY(uint32_t, mb_perm_apply32_base)
}
static void mb_perm_fill64_base(const mb_perm *p, uint64_t start, int64_t *out,
                                int64_t m) {
    MB_PERM_FILL_BODY(uint64_t, mb_perm_apply64_base)
}
#ifdef MB_PERM_X86
/* Whole fills per level: the digit and output loops vectorize too (at the
   plain level they ran on 16-byte vectors, 0.8 of the 1.5 ns an index of
   8 rounds with AVX-512, n = 1e6). */
__attribute__((target("avx2")))
static void mb_perm_fill32_avx2(const mb_perm *p, uint64_t start, int64_t *out,
                                int64_t m) {
    MB_PERM_FILL_BODY(uint32_t, mb_perm_apply32_avx2)
}
__attribute__((target("avx2")))
static void mb_perm_fill64_avx2(const mb_perm *p, uint64_t start, int64_t *out,
                                int64_t m) {
    MB_PERM_FILL_BODY(uint64_t, mb_perm_apply64_avx2)
}
MB_PERM_T512
static void mb_perm_fill32_avx512(const mb_perm *p, uint64_t start, int64_t *out,
                                  int64_t m) {
    MB_PERM_FILL_BODY(uint32_t, mb_perm_apply32_avx512)
}
MB_PERM_T512
static void mb_perm_fill64_avx512(const mb_perm *p, uint64_t start, int64_t *out,
                                  int64_t m) {
    MB_PERM_FILL_BODY(uint64_t, mb_perm_apply64_avx512)
}
#endif

/* out[i] = perm(start + i) for i < m, start + m <= n; level: 0 plain,
   1 AVX2, 2 AVX-512 (the caller's mb_simd_get()).  The values do not
   depend on the level. */
static inline void mb_perm_fill(const mb_perm *p, uint64_t start, int64_t *out,
                                int64_t m, int level) {
#ifdef MB_PERM_X86
    if (level >= 2) {
        if (p->wide) mb_perm_fill64_avx512(p, start, out, m);
        else mb_perm_fill32_avx512(p, start, out, m);
        return;
    }
    if (level == 1) {
        if (p->wide) mb_perm_fill64_avx2(p, start, out, m);
        else mb_perm_fill32_avx2(p, start, out, m);
        return;
    }
#endif
    (void)level;
    if (p->wide) mb_perm_fill64_base(p, start, out, m);
    else mb_perm_fill32_base(p, start, out, m);
}

/* (hi * 2**64 + lo) = q * d + rem with q taken mod 2**64; d > 0. */
static inline uint64_t mb_perm_divmod128(uint64_t hi, uint64_t lo, uint64_t d,
                                         uint64_t *rem) {
    if (hi == 0) {                     /* the usual case: one 64-bit division */
        *rem = lo % d;
        return lo / d;
    }
    hi %= d;
#if defined(__SIZEOF_INT128__)
    {
        __uint128_t x = ((__uint128_t)hi << 64) | lo;
        *rem = (uint64_t)(x % d);
        return (uint64_t)(x / d);
    }
#else
    {
        uint64_t q = 0;
        int i;
        for (i = 0; i < 64; i++) {
            uint64_t top = hi >> 63;
            hi = (hi << 1) | (lo >> 63);
            lo <<= 1;
            q <<= 1;
            if (top || hi >= d) { hi -= d; q |= 1; }
        }
        *rem = hi;
        return q;
    }
#endif
}

/* Position a * b + c of the concatenated epochs of length n, as
   (epoch mod 2**64, offset): a, b, c < 2**64, exact. */
static inline uint64_t mb_perm_locate(uint64_t a, uint64_t b, uint64_t c, uint64_t n,
                                      uint64_t *offset) {
    uint64_t hi, lo;
#if defined(__SIZEOF_INT128__)
    __uint128_t x = (__uint128_t)a * b + c;
    hi = (uint64_t)(x >> 64);
    lo = (uint64_t)x;
#else
    uint64_t a_lo = (uint32_t)a, a_hi = a >> 32, b_lo = (uint32_t)b, b_hi = b >> 32;
    uint64_t p0 = a_lo * b_lo, p1 = a_lo * b_hi, p2 = a_hi * b_lo, p3 = a_hi * b_hi;
    uint64_t mid = (p0 >> 32) + (uint32_t)p1 + (uint32_t)p2;
    hi = p3 + (p1 >> 32) + (p2 >> 32) + (mid >> 32);
    lo = (mid << 32) | (uint32_t)p0;
    lo += c;
    hi += lo < c;
#endif
    return mb_perm_divmod128(hi, lo, n, offset);
}

/* out[x] = perm(x) for every x < n, the whole epoch: mb_perm_fill, or on
   AVX-512 (F, DQ, BW, VL), when both digits are at most 32 and a*b at
   most MB_PERM_NET_TAB_MAX (every n < MB_PERM_TABLE_N), the same network
   on byte lanes with each round's F tabulated.  Round r adds F(K_r, v),
   scaled to the digit's range, for v the other digit, below 32: 16 or 32
   values, computed once for all positions on 32-bit lanes (mb_perm_f32's
   arithmetic), narrowed to bytes and looked up with a byte shuffle
   (vpshufb, two and a masked select when a digit exceeds 16).  Digits
   and sums stay below 64, so a position's two digits are two bytes, and
   the whole domain (at most 256 positions) is one to four vectors of 64
   lanes that run all the rounds in registers; L*b + R < 256 is a byte
   too (L*b looked up the same way), so the walks of cycle walking run on
   a 256-byte table.  Each round's table is computed where the round uses
   it: the tables do not depend on the positions, so their multiplies run
   while earlier rounds wait on their look-ups (computed first, all of
   them, the epoch took 53 ns at n = 100).  Measured in a standalone C
   loop (AMD EPYC Zen 5, 2 vCPUs shared, thread CPU time, best of 7 runs
   of 2e4 epochs, the three in turn), a whole epoch: n = 100 (16 rounds)
   44 ns, against 83 ns on 32-bit lanes (16 positions a vector, looked up
   with vpermt2d) and 187 ns for mb_perm_fill; n = 5 35 against 77 and
   259 (a walk costs the fill's block a second pass), n = 127 52 against
   95 and 386, n = 200 (8 rounds) 55 against 103 and 148, n = 250 71
   against 127 and 350.  The values are the same (tests/test_permute.py
   compares them with the network position by position for every n below
   MB_PERM_TABLE_N, several keys, epochs and round counts). */
#define MB_PERM_NET_TAB_MAX 256
#ifdef MB_PERM_X86
#include <immintrin.h>
/* D = (D + F_r(O)) mod M on 64 byte lanes: look-up (the low 4 bits of O
   index each 16-byte lane; TWO: O >= 16 from the second table), add, and
   subtract M where the sum reaches it (the smaller of s and s - M as
   unsigned bytes, s < 2M <= 64). */
#define MB_PERM_BYTE_STEP(D, O, lo, hi, M, TWO) do {                          \
        __m512i t_ = _mm512_shuffle_epi8(lo, O);                              \
        if (TWO)                                                              \
            t_ = _mm512_mask_shuffle_epi8(t_, _mm512_test_epi8_mask(O, s16), hi, O); \
        t_ = _mm512_add_epi8(D, t_);                                          \
        D = _mm512_min_epu8(t_, _mm512_sub_epi8(t_, M));                      \
    } while (0)

/* lo (v < 16) and hi (16 <= v < 32, TWO) = mb_perm_f32(v, key) scaled to
   [0, M), in each 16-byte lane. */
#define MB_PERM_BYTE_TABLE(lo, hi, key, M, TWO) do {                          \
        const __m512i klo_ = _mm512_set1_epi32((int)(uint32_t)(key));          \
        const __m512i khi_ = _mm512_set1_epi32((int)(uint32_t)((key) >> 32));  \
        __m512i v_ = iota, x_;                                                \
        int h_;                                                               \
        for (h_ = 0; h_ <= TWO; h_++, v_ = _mm512_add_epi32(v_, sixteen)) {   \
            x_ = _mm512_mullo_epi32(_mm512_xor_si512(v_, klo_), c1);           \
            x_ = _mm512_add_epi32(x_, khi_);                                  \
            x_ = _mm512_xor_si512(x_, _mm512_srli_epi32(x_, 15));             \
            x_ = _mm512_srli_epi32(_mm512_mullo_epi32(x_, c2), 16);           \
            x_ = _mm512_srli_epi32(_mm512_mullo_epi32(x_, M), 16);            \
            x_ = _mm512_broadcast_i32x4(_mm512_cvtepi32_epi8(x_));            \
            if (h_) hi = x_; else lo = hi = x_;                               \
        }                                                                     \
    } while (0)

/* The network over [0, a*b) on NV vectors of 64 byte lanes (a*b <= 64*NV),
   TWO: a digit exceeds 16; 2 <= b. */
MB_PERM_T512 __attribute__((always_inline))
static inline void mb_perm_whole8_body(const mb_perm *p, int64_t *out, const int NV,
                                       const int TWO) {
    __m512i L[4], R[4], mlo, mhi;
    uint8_t net[256] __attribute__((aligned(64)));
    const uint32_t a = (uint32_t)p->a, b = (uint32_t)p->b, n = (uint32_t)p->n;
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i sixteen = _mm512_set1_epi32(16);
    const __m512i c1 = _mm512_set1_epi32((int)0x7FEB352DU);
    const __m512i c2 = _mm512_set1_epi32((int)0x846CA68BU);
    const __m512i va = _mm512_set1_epi32((int)a), vb = _mm512_set1_epi32((int)b);
    const __m512i s16 = _mm512_set1_epi8(16);
    const __m512i a8 = _mm512_set1_epi8((char)a), b8 = _mm512_set1_epi8((char)b);
    int r, k;
    uint32_t i;
    /* L*b for L < 32 (below 256 where L < a), to look up at the end */
    mlo = _mm512_broadcast_i32x4(_mm512_cvtepi32_epi8(_mm512_mullo_epi32(iota, vb)));
    mhi = _mm512_broadcast_i32x4(_mm512_cvtepi32_epi8(
        _mm512_mullo_epi32(_mm512_add_epi32(iota, sixteen), vb)));
    {   /* x = L*b + R on 16-bit lanes: L = (x * ceil(2**16 / b)) >> 16, exact
           for x < 256 and b <= 32 (the error is below x / 2**16 < 1 / b) */
        const __m512i m16 = _mm512_set1_epi16((short)((65536 + b - 1) / b));
        const __m512i b16 = _mm512_set1_epi16((short)b);
        const __m512i iw = _mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21,
                                            20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10,
                                            9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
        for (k = 0; k < NV; k++) {
            __m512i x0 = _mm512_add_epi16(iw, _mm512_set1_epi16((short)(64 * k)));
            __m512i x1 = _mm512_add_epi16(x0, _mm512_set1_epi16(32));
            __m512i q0 = _mm512_mulhi_epu16(x0, m16), q1 = _mm512_mulhi_epu16(x1, m16);
            __m512i r0 = _mm512_sub_epi16(x0, _mm512_mullo_epi16(q0, b16));
            __m512i r1 = _mm512_sub_epi16(x1, _mm512_mullo_epi16(q1, b16));
            L[k] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi16_epi8(q0)),
                                      _mm512_cvtepi16_epi8(q1), 1);
            R[k] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi16_epi8(r0)),
                                      _mm512_cvtepi16_epi8(r1), 1);
        }
    }
    /* The rounds, each with its table (mb_perm_f32, scaled, in each
       16-byte lane) computed where it is used: the tables do not depend
       on the positions, so they are computed while earlier rounds wait on
       their look-ups. */
    for (r = 0; r < p->rounds; r++) {
        __m512i lo, hi;
        if (r & 1) {
            MB_PERM_BYTE_TABLE(lo, hi, p->key[r], vb, TWO);
            for (k = 0; k < NV; k++)
                MB_PERM_BYTE_STEP(R[k], L[k], lo, hi, b8, TWO);
        } else {
            MB_PERM_BYTE_TABLE(lo, hi, p->key[r], va, TWO);
            for (k = 0; k < NV; k++)
                MB_PERM_BYTE_STEP(L[k], R[k], lo, hi, a8, TWO);
        }
    }
    for (k = 0; k < NV; k++) {            /* net[x] = L*b + R */
        __m512i y = _mm512_shuffle_epi8(mlo, L[k]);
        if (a > 16)
            y = _mm512_mask_shuffle_epi8(y, _mm512_test_epi8_mask(L[k], s16), mhi, L[k]);
        _mm512_store_si512((void *)(net + 64 * k), _mm512_add_epi8(y, R[k]));
    }
    for (i = 0; i + 8 <= n; i += 8)       /* out, then the few to walk on */
        _mm512_storeu_si512((void *)(out + i), _mm512_cvtepu8_epi64(
            _mm_loadl_epi64((const __m128i *)(net + i))));
    if (i < n)
        _mm512_mask_storeu_epi64(out + i, (__mmask8)((1u << (n - i)) - 1), _mm512_cvtepu8_epi64(
            _mm_loadl_epi64((const __m128i *)(net + i))));
    if (n < a * b) {                      /* then n < 256 */
        const __m512i n8 = _mm512_set1_epi8((char)n);
        for (k = 0; 64 * (uint32_t)k < n; k++) {
            uint64_t w = _mm512_cmpge_epu8_mask(_mm512_load_si512((const void *)(net + 64 * k)), n8);
            if (n - 64 * (uint32_t)k < 64)
                w &= ((uint64_t)1 << (n - 64 * (uint32_t)k)) - 1;
            while (w) {
                uint32_t j = 64 * (uint32_t)k + (uint32_t)__builtin_ctzll(w), v = net[j];
                while (v >= n) v = net[v];
                out[j] = (int64_t)v;
                w &= w - 1;
            }
        }
    }
}
MB_PERM_T512 static void mb_perm_whole8_1(const mb_perm *p, int64_t *o) { mb_perm_whole8_body(p, o, 1, 0); }
MB_PERM_T512 static void mb_perm_whole8_2(const mb_perm *p, int64_t *o) { mb_perm_whole8_body(p, o, 2, 0); }
MB_PERM_T512 static void mb_perm_whole8_4(const mb_perm *p, int64_t *o) { mb_perm_whole8_body(p, o, 4, 0); }
MB_PERM_T512 static void mb_perm_whole8_1t(const mb_perm *p, int64_t *o) { mb_perm_whole8_body(p, o, 1, 1); }
MB_PERM_T512 static void mb_perm_whole8_2t(const mb_perm *p, int64_t *o) { mb_perm_whole8_body(p, o, 2, 1); }
MB_PERM_T512 static void mb_perm_whole8_4t(const mb_perm *p, int64_t *o) { mb_perm_whole8_body(p, o, 4, 1); }

/* The whole epoch on byte lanes: as many vectors as a*b needs. */
static void mb_perm_whole8_avx512(const mb_perm *p, int64_t *out) {
    const uint64_t ab = p->a * p->b;
    const int two = p->a > 16 || p->b > 16;
    if (ab <= 64) (two ? mb_perm_whole8_1t : mb_perm_whole8_1)(p, out);
    else if (ab <= 128) (two ? mb_perm_whole8_2t : mb_perm_whole8_2)(p, out);
    else (two ? mb_perm_whole8_4t : mb_perm_whole8_4)(p, out);
}
#endif

static inline void mb_perm_whole(const mb_perm *p, int64_t *out, int level) {
#ifdef MB_PERM_X86
    if (level >= 2 && !p->wide && p->n >= 2 && p->a <= 32 && p->b <= 32
            && p->a * p->b <= MB_PERM_NET_TAB_MAX) {
        mb_perm_whole8_avx512(p, out);
        return;
    }
#endif
    mb_perm_fill(p, 0, out, (int64_t)p->n, level);
}

/* Whole epochs of short axes, kept per thread.  Below MB_PERM_TABLE_N rows
   a fill of a few positions costs nearly as much as a fill of the whole
   axis: each of the rounds waits on the one before (the same C loop,
   n = 100, 16 rounds: 8 positions 106 ns, 64 positions 163 ns, all 100
   positions 183 ns; the round keys 31 ns), and a batch of 64 to 128 rows
   of a 100-row axis touches one to three epochs.  So an epoch of such an
   axis is computed once, whole (mb_perm_whole), into a table, and its
   batches copy from it.  Each thread keeps the last MB_PERM_TABLE_SLOTS
   tables it computed (thread-local storage, replaced in turn: no lock, and
   a table is read only by the thread that filled it), so aligned arrays
   drawn by separate Minibatches, two sampled axes and random access to
   recent batches find their epoch there.  Memory: at most
   MB_PERM_TABLE_SLOTS * (MB_PERM_TABLE_N * 8 + 56) + 8 bytes (8.4 KiB) a
   thread and compiled module that draws epochs. */
#define MB_PERM_TABLE_N 256
#define MB_PERM_TABLE_SLOTS 4

typedef struct {
    uint64_t key0, key1, sid, epoch, n, b;   /* n = 0: empty */
    int rounds;
    int64_t row[MB_PERM_TABLE_N];
} mb_perm_table;

#if defined(_MSC_VER)
#define MB_PERM_THREAD __declspec(thread)
#else
#define MB_PERM_THREAD __thread
#endif
/* One thread-local object, so that a look-up finds this thread's copy once
   (in a shared library each thread-local variable is found through a call
   to __tls_get_addr). */
typedef struct {
    mb_perm_table slot[MB_PERM_TABLE_SLOTS];
    unsigned turn;                           /* the slot to replace next */
} mb_perm_table_set;
static MB_PERM_THREAD mb_perm_table_set mb_perm_tables;

/* This thread's table of epoch `epoch` of stream `sid` under (key0, key1)
   for p's domain (n < MB_PERM_TABLE_N, 32-bit lanes): *hit = 1 when it
   holds the epoch's rows, else *hit = 0 and the table is the slot taken
   for it, whose rows the caller must fill at once (on this thread). */
static inline int64_t *mb_perm_table_rows(const mb_perm *p, uint64_t key0, uint64_t key1,
                                          uint64_t sid, uint64_t epoch, int *hit) {
    mb_perm_table_set *ts = &mb_perm_tables;
    mb_perm_table *t;
    int i;
    for (i = 0; i < MB_PERM_TABLE_SLOTS; i++) {
        t = &ts->slot[i];
        if (t->epoch == epoch && t->n == p->n && t->key0 == key0 && t->key1 == key1
                && t->sid == sid && t->b == p->b && t->rounds == p->rounds) {
            *hit = 1;
            return t->row;
        }
    }
    t = &ts->slot[ts->turn++ % MB_PERM_TABLE_SLOTS];
    t->key0 = key0; t->key1 = key1; t->sid = sid; t->epoch = epoch;
    t->n = p->n; t->b = p->b; t->rounds = p->rounds;
    *hit = 0;
    return t->row;
}

/* out[i] = rows[i] for i < m (m <= MB_PERM_TABLE_N): a run of a table into
   a batch's indices.  On AVX-512 by 64-byte moves, the last one masked:
   memcpy of an unknown length, which the compiler inlines as `rep movsq`,
   took 3% of the time of batches of 128 rows of 100 (2 to 3 runs a batch)
   in a perf profile on AMD EPYC Zen 5, about 15 ns a batch. */
#ifdef MB_PERM_X86
MB_PERM_T512
static void mb_perm_copy_avx512(int64_t *out, const int64_t *rows, uint64_t m) {
    uint64_t i;
    for (i = 0; i + 8 <= m; i += 8)
        _mm512_storeu_si512((void *)(out + i), _mm512_loadu_si512((const void *)(rows + i)));
    if (i < m) {
        __mmask8 k = (__mmask8)((1u << (m - i)) - 1);
        _mm512_mask_storeu_epi64(out + i, k, _mm512_maskz_loadu_epi64(k, rows + i));
    }
}
#endif
static inline void mb_perm_copy(int64_t *out, const int64_t *rows, uint64_t m, int level) {
#ifdef MB_PERM_X86
    if (level >= 2) {
        mb_perm_copy_avx512(out, rows, m);
        return;
    }
#endif
    (void)level;
    memcpy(out, rows, (size_t)m * sizeof(int64_t));
}

#endif
