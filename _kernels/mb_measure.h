/* What the dispatcher measures with: a monotonic clock in ns, relaxed
 * atomic access to its calibration cells, and a read of a source's lines.
 */
#ifndef MB_MEASURE_H
#define MB_MEASURE_H

#include <stdint.h>
#include <time.h>

static inline int64_t mb_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Relaxed atomic access to the dispatcher's calibration results (plain
   int64_t cells, read on every batch, written once by whichever thread
   calibrates first). */
static inline int64_t mb_load(const int64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void mb_store(int64_t *p, int64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }

/* Read every cache line of [p, p + bytes), so that a source that fits a
   cache is there, as it is for batches drawn from it again and again. */
static inline void mb_touch(const char *p, int64_t bytes) {
    volatile char sink = 0;
    char acc = 0;
    int64_t o;
    for (o = 0; o < bytes; o += 64) acc ^= p[o];
    if (bytes > 0) acc ^= p[bytes - 1];
    sink = acc;
    (void)sink;
}

#endif
