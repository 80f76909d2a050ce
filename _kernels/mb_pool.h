/* A persistent pool of worker threads for splitting one batch into chunks.
 *
 * mb_pool_run(fn, ctx, nchunks, nthreads) runs fn(ctx, c) for every chunk
 * c < nchunks on the calling thread and up to nthreads - 1 workers, each
 * claiming the next chunk from a shared counter: the caller starts at once
 * and never waits for a chunk nobody has claimed, so a worker that wakes late
 * (or is descheduled, or whose core is busy with the caller's BLAS or
 * OpenMP threads) costs at most the chunk it holds.
 *
 * - Workers are created at first need, up to the number asked for, and
 *   sleep on a condition variable when idle: no spinning, so an idle pool
 *   costs nothing to other processes on the machine.
 * - One batch at a time: a caller that finds the pool in use by another
 *   thread runs its batch alone instead of queueing behind it or starting
 *   threads of its own (no oversubscription when several Python threads
 *   draw at once).
 * - fork: the child starts with no workers (pthread_atfork); its first
 *   split batch creates them again.
 * - Serial whenever a thread cannot be created.
 *
 * mb_pool_wake_ns() measures how long a sleeping worker takes to start a
 * chunk after a job is posted (the median of a few tries): the cost a split
 * must win back, used by the dispatcher (_dispatch.pyx).
 *
 * One pool a process: mb_pool.c is compiled into the _pool extension only,
 * and the other modules reach it through _pool.pxd.
 */
#ifndef MB_POOL_H
#define MB_POOL_H

#include <stdint.h>

typedef void (*mb_chunk_fn)(void *ctx, int64_t chunk);

#define MB_POOL_MAX 1024       /* workers, at most */

/* Not exported from the extension's shared object. */
#if defined(__GNUC__) || defined(__clang__)
#define MB_POOL_API __attribute__((visibility("hidden")))
#else
#define MB_POOL_API
#endif

MB_POOL_API int mb_pool_run(mb_chunk_fn fn, void *ctx, int64_t nchunks, int nthreads);
MB_POOL_API int mb_pool_size(void);
MB_POOL_API int64_t mb_pool_wake_ns(int tries, int gap_us);

#endif
