/* The copy of short sampled rows, and the prefetch hint of every copy loop
 * (_copy.pxd).
 */
#ifndef MB_COPY_H
#define MB_COPY_H

#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#define MB_PREFETCH(p) __builtin_prefetch((p), 0, 0)
#else
#define MB_PREFETCH(p) ((void)(p))
#endif

/* Rows of MB_SHORT_MIN to MB_SHORT_MAX bytes go through mb_copy_short_rows
   (17 moves of 16 bytes at most). */
#define MB_SHORT_MIN 16
#define MB_SHORT_MAX 272

/* Copy m sampled rows of nb bytes, 16 <= nb <= MB_SHORT_MAX, from
   base + idx[i] * stride to dst: a fixed count of 16-byte moves per row,
   the last one overlapping, in one loop per count, so that no row pays
   for a call or a size dispatch.  With ahead > 0, each copy is preceded
   by a prefetch of the row `ahead` positions further: the line of every
   64th byte and of the last one (a row over a line boundary included). */
#define MB_PREFETCH_ROW(p) do { const char *p_ = (p); int64_t o_; \
    for (o_ = 0; o_ < nb - 1; o_ += 64) MB_PREFETCH(p_ + o_); \
    MB_PREFETCH(p_ + nb - 1); } while (0)
#define MB_MOVE(K, k) if (K > k) memcpy(d + 16 * k, s + 16 * k, 16);
#define MB_SHORT_LOOP(K) \
    for (i = 0; i < m; i++) { \
        const char *s; char *d = dst + nb * i; \
        if (i < lead) MB_PREFETCH_ROW(base + idx[i + ahead] * stride); \
        s = base + idx[i] * stride; \
        MB_MOVE(K, 0) MB_MOVE(K, 1) MB_MOVE(K, 2) MB_MOVE(K, 3) \
        MB_MOVE(K, 4) MB_MOVE(K, 5) MB_MOVE(K, 6) MB_MOVE(K, 7) \
        MB_MOVE(K, 8) MB_MOVE(K, 9) MB_MOVE(K, 10) MB_MOVE(K, 11) \
        MB_MOVE(K, 12) MB_MOVE(K, 13) MB_MOVE(K, 14) MB_MOVE(K, 15) \
        memcpy(d + nb - 16, s + nb - 16, 16); \
    } break;
static void mb_copy_short_rows(char *dst, const char *base, const int64_t *idx,
                               int64_t stride, int64_t m, int64_t nb,
                               int64_t ahead) {
    int64_t i, lead = ahead > 0 ? m - ahead : 0;
    for (i = 0; i < (ahead < m ? ahead : m); i++) MB_PREFETCH_ROW(base + idx[i] * stride);
    switch ((nb - 1) >> 4) {   /* 16-byte moves before the last one */
        case 0: MB_SHORT_LOOP(0)    case 1: MB_SHORT_LOOP(1)
        case 2: MB_SHORT_LOOP(2)    case 3: MB_SHORT_LOOP(3)
        case 4: MB_SHORT_LOOP(4)    case 5: MB_SHORT_LOOP(5)
        case 6: MB_SHORT_LOOP(6)    case 7: MB_SHORT_LOOP(7)
        case 8: MB_SHORT_LOOP(8)    case 9: MB_SHORT_LOOP(9)
        case 10: MB_SHORT_LOOP(10)  case 11: MB_SHORT_LOOP(11)
        case 12: MB_SHORT_LOOP(12)  case 13: MB_SHORT_LOOP(13)
        case 14: MB_SHORT_LOOP(14)  case 15: MB_SHORT_LOOP(15)
        default: MB_SHORT_LOOP(16)
    }
}
#undef MB_SHORT_LOOP
#undef MB_MOVE
#undef MB_PREFETCH_ROW

#endif
