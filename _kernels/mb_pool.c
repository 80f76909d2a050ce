/* The persistent worker pool declared in mb_pool.h: its one copy in the
   process, compiled into the _pool extension (_pool.pyx). */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "mb_measure.h"
#include "mb_pool.h"

/* The job lives in the pool (one caller owns the pool at a time), so that a
   worker that wakes late never reads a caller's stack.  `state` packs the
   job's generation (bits 32-63), a closed flag (bit 31) and the number of
   workers inside it (bits 0-30): a worker joins with a compare-and-swap
   that fails once the caller has closed the job or posted a newer one, and
   the caller closes it and waits for the workers inside without taking the
   mutex (a worker descheduled while holding it cannot stall the caller). */
#define MB_POOL_CLOSED (1ULL << 31)
#define MB_POOL_JOINED ((1ULL << 31) - 1)

typedef struct {
    pthread_cond_t cond;
    unsigned long long gen;    /* the job generation it is asked to join (under the mutex) */
    unsigned long long seen;   /* the last generation it woke for (its own) */
    int id;                    /* its index in the pool's slots */
} mb_pool_slot;

static struct {
    pthread_mutex_t mu;
    atomic_ullong state;       /* generation << 32 | closed | joined */
    atomic_llong next;         /* the job's next chunk to claim */
    long long nchunks;
    mb_chunk_fn fn;
    void *ctx;
    int want;                  /* workers asked to join */
    int nworkers;              /* workers created */
    mb_pool_slot *slots[MB_POOL_MAX];
    atomic_int busy;           /* a caller owns the pool */
    int atfork_done;
} mb_pool = {PTHREAD_MUTEX_INITIALIZER, MB_POOL_CLOSED};

/* Ask worker i to join generation gen (under the mutex).  Wakes spread as
   a tree: the caller wakes workers 0 and 1, worker i wakes 2i + 2 and
   2i + 3, so that n workers start after about log2(n) wake-ups rather than
   the caller making n system calls before its own first chunk. */
static void mb_pool_wake(int i, int want, unsigned long long gen) {
    if (i < want) {
        mb_pool.slots[i]->gen = gen;
        pthread_cond_signal(&mb_pool.slots[i]->cond);
    }
}

static void mb_pool_claim(void) {
    for (;;) {
        long long c = atomic_fetch_add_explicit(&mb_pool.next, 1, memory_order_relaxed);
        if (c >= mb_pool.nchunks) return;
        mb_pool.fn(mb_pool.ctx, (int64_t)c);
    }
}

/* Enter generation gen if it is still open; 1 if entered. */
static int mb_pool_join(unsigned long long gen) {
    unsigned long long st = atomic_load(&mb_pool.state);
    for (;;) {
        if ((st >> 32) != (gen & 0xFFFFFFFFULL) || (st & MB_POOL_CLOSED)) return 0;
        if (atomic_compare_exchange_weak(&mb_pool.state, &st, st + 1)) return 1;
    }
}

static void *mb_pool_worker(void *arg) {
    mb_pool_slot *me = (mb_pool_slot *)arg;
    pthread_mutex_lock(&mb_pool.mu);
    for (;;) {
        unsigned long long gen;
        while (me->gen == me->seen)
            pthread_cond_wait(&me->cond, &mb_pool.mu);
        gen = me->seen = me->gen;
        mb_pool_wake(2 * me->id + 2, mb_pool.want, gen);
        mb_pool_wake(2 * me->id + 3, mb_pool.want, gen);
        pthread_mutex_unlock(&mb_pool.mu);
        if (mb_pool_join(gen)) {
            mb_pool_claim();
            atomic_fetch_sub(&mb_pool.state, 1);   /* leave */
        }
        pthread_mutex_lock(&mb_pool.mu);
    }
    return NULL;
}

/* The child of a fork has only the thread that called fork: forget the
   workers (their memory is left as it is) and any job in progress. */
static void mb_pool_atfork_prepare(void) { pthread_mutex_lock(&mb_pool.mu); }
static void mb_pool_atfork_parent(void) { pthread_mutex_unlock(&mb_pool.mu); }
static void mb_pool_atfork_child(void) {
    pthread_mutex_init(&mb_pool.mu, NULL);
    atomic_store(&mb_pool.state,
                 (atomic_load(&mb_pool.state) & ~MB_POOL_JOINED) | MB_POOL_CLOSED);
    mb_pool.nworkers = 0;
    atomic_store(&mb_pool.busy, 0);
}

/* Create workers until there are n (under the mutex); returns how many exist. */
static int mb_pool_grow(int n) {
    if (n > MB_POOL_MAX) n = MB_POOL_MAX;
    if (!mb_pool.atfork_done) {
        if (pthread_atfork(mb_pool_atfork_prepare, mb_pool_atfork_parent,
                           mb_pool_atfork_child) != 0)
            return mb_pool.nworkers;
        mb_pool.atfork_done = 1;
    }
    while (mb_pool.nworkers < n) {
        pthread_t th;
        pthread_attr_t at;
        mb_pool_slot *s = (mb_pool_slot *)calloc(1, sizeof(mb_pool_slot));
        int ok;
        if (s == NULL || pthread_cond_init(&s->cond, NULL) != 0) { free(s); break; }
        s->id = mb_pool.nworkers;
        ok = pthread_attr_init(&at) == 0;
        ok = ok && pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED) == 0;
        ok = ok && pthread_attr_setstacksize(&at, 1 << 20) == 0;
        ok = ok && pthread_create(&th, &at, mb_pool_worker, s) == 0;
        pthread_attr_destroy(&at);
        if (!ok) { pthread_cond_destroy(&s->cond); free(s); break; }
        mb_pool.slots[mb_pool.nworkers++] = s;
    }
    return mb_pool.nworkers;
}

/* Workers created so far (for tests). */
int mb_pool_size(void) {
    int n;
    pthread_mutex_lock(&mb_pool.mu);
    n = mb_pool.nworkers;
    pthread_mutex_unlock(&mb_pool.mu);
    return n;
}

/* Run fn(ctx, c), c < nchunks, on this thread and up to nthreads - 1 workers.
   Returns the number of workers asked to join (0: run alone); with
   `alone` 0, returns -1 and runs nothing instead of running alone. */
static int mb_pool_run_ex(mb_chunk_fn fn, void *ctx, int64_t nchunks, int nthreads,
                          int alone) {
    int expected = 0, w;
    long long c;
    unsigned long long gen;
    if (nthreads > nchunks) nthreads = (int)nchunks;
    if (nthreads <= 1 || !atomic_compare_exchange_strong(&mb_pool.busy, &expected, 1)) {
        if (!alone) return -1;
        for (c = 0; c < nchunks; c++) fn(ctx, c);
        return 0;
    }
    pthread_mutex_lock(&mb_pool.mu);
    w = mb_pool_grow(nthreads - 1);
    if (w > nthreads - 1) w = nthreads - 1;
    atomic_store(&mb_pool.next, 0);
    mb_pool.nchunks = nchunks;
    mb_pool.fn = fn;
    mb_pool.ctx = ctx;
    mb_pool.want = w;
    /* Open the next generation (the last one is closed, with nobody inside). */
    gen = (atomic_load(&mb_pool.state) >> 32) + 1;
    atomic_store(&mb_pool.state, (gen & 0xFFFFFFFFULL) << 32);
    mb_pool_wake(0, w, gen);
    mb_pool_wake(1, w, gen);
    pthread_mutex_unlock(&mb_pool.mu);
    mb_pool_claim();
    /* Every chunk is claimed: close the job to late wakers, then wait for
       the workers that hold a chunk (each a small part of the batch, so
       yield rather than sleep: waking the caller would cost more). */
    atomic_fetch_or(&mb_pool.state, MB_POOL_CLOSED);
    while (atomic_load(&mb_pool.state) & MB_POOL_JOINED)
        sched_yield();
    atomic_store(&mb_pool.busy, 0);
    return w;
}

int mb_pool_run(mb_chunk_fn fn, void *ctx, int64_t nchunks, int nthreads) {
    return mb_pool_run_ex(fn, ctx, nchunks, nthreads, 1);
}

typedef struct {
    int64_t posted;
    pthread_t caller;
    atomic_llong started;      /* when a worker started its chunk; 0: not yet */
} mb_wake_probe;

static void mb_wake_chunk(void *ctx, int64_t c) {
    mb_wake_probe *p = (mb_wake_probe *)ctx;
    int64_t t0 = mb_now_ns();
    long long zero = 0;
    (void)c;
    if (pthread_equal(pthread_self(), p->caller)) {
        /* The caller's chunk: wait (at most 5 ms) for a worker, if one was
           asked, to take the other. */
        while (mb_pool.want > 0 && atomic_load(&p->started) == 0
               && mb_now_ns() - t0 < 5000000)
            sched_yield();   /* the worker may be waiting for this CPU */
        return;
    }
    atomic_compare_exchange_strong(&p->started, &zero, (long long)t0);
}

static int mb_cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Median over `tries` of the time from posting a job to a sleeping worker
   starting its chunk, in ns; -1 if no worker could be used.  Each try sleeps
   `gap_us` first, so that the worker (and its core) is idle as between
   batches. */
int64_t mb_pool_wake_ns(int tries, int gap_us) {
    int64_t t[16];
    int i, k = 0;
    if (tries > 16) tries = 16;
    for (i = 0; i < tries; i++) {
        mb_wake_probe p;
        struct timespec gap = {0, (long)gap_us * 1000};
        nanosleep(&gap, NULL);
        atomic_init(&p.started, 0);
        p.caller = pthread_self();
        p.posted = mb_now_ns();
        if (mb_pool_run_ex(mb_wake_chunk, &p, 2, 2, 0) <= 0) return -1;
        if (atomic_load(&p.started) > 0) t[k++] = atomic_load(&p.started) - p.posted;
    }
    if (k == 0) return -1;
    qsort(t, k, sizeof(int64_t), mb_cmp_i64);
    return t[k / 2];
}
