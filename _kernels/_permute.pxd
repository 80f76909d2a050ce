# cython: language_level=3
"""Epoch permutations: each epoch of a sampled axis is a keyed bijection of
[0, n) (mb_permute.h), and the epoch stream is the concatenation of epochs.

Round keys
----------
The round keys of epoch ``e`` of axis ``s`` (its position) under the seed's
128-bit key are the words of Philox4x64-10 blocks with counter
``(j, e, s, 2**64 - 1)``, j = 0, 1, ..., word r being round r's key.  The
draws of the other modes use counters whose last word is 0 (32-bit draws),
1 (64-bit draws) or 2 + r (the r-th replacement of a rejected draw), so no
block is shared with them, and epochs and axes get unrelated keys.

Positions
---------
Batch ``t`` of an axis with batch size ``b`` takes, in order, positions
``[t*b, (t+1)*b)`` of the epoch stream ("wrap"), or, with ``q`` batches an
epoch (``n // b`` for "drop", ``ceil(n / b)`` for "short"), positions
``[i*b, (i+1)*b)`` of epoch ``t // q``, ``i = t % q``.  A "short" batch's
positions past the epoch's end are filled with the epoch's first rows again
(so that a full-size gather reads valid rows); the caller trims them.
"""
from libc.stdint cimport uint64_t, int64_t

from _philox cimport mb_simd_get


cdef extern from "mb_permute.h":
    enum:
        MB_PERM_ROUNDS
        MB_PERM_SMALL_N
        MB_PERM_SMALL_ROUNDS
        MB_PERM_MAX_ROUNDS
    ctypedef struct mb_perm:
        uint64_t n
        uint64_t a
        uint64_t b
        int rounds
        int wide
        uint64_t key[32]
    uint64_t mb_perm_digit(uint64_t n) noexcept nogil
    void mb_perm_setup(mb_perm *p, uint64_t n, uint64_t b, int rounds, int wide) noexcept nogil
    void mb_perm_fill(const mb_perm *p, uint64_t start, int64_t *out, int64_t m,
                      int level) noexcept nogil
    uint64_t mb_perm_locate(uint64_t a, uint64_t b, uint64_t c, uint64_t n,
                            uint64_t *offset) noexcept nogil
    enum:
        MB_PERM_TABLE_N
        MB_PERM_TABLE_SLOTS
    void mb_perm_whole(const mb_perm *p, int64_t *out, int level) noexcept nogil
    int64_t *mb_perm_table_rows(const mb_perm *p, uint64_t key0, uint64_t key1,
                                uint64_t sid, uint64_t epoch, int *hit) noexcept nogil
    void mb_perm_copy(int64_t *out, const int64_t *rows, uint64_t m, int level) noexcept nogil


cdef enum:
    EPOCHS_OFF = 0
    EPOCHS_WRAP = 1
    EPOCHS_DROP = 2
    EPOCHS_SHORT = 3


cdef extern from "mb_philox.h":
    # Two Philox blocks, counters (j, c1, c2, c3) and (j + 1, ...), with the
    # chains interleaved.
    void mb_philox4x64_10_x2(uint64_t j, uint64_t c1, uint64_t c2, uint64_t c3,
                             uint64_t k0, uint64_t k1, uint64_t *out) noexcept nogil


cdef inline void perm_keys(mb_perm *p, uint64_t key0, uint64_t key1, uint64_t sid,
                           uint64_t epoch) noexcept nogil:
    """Round keys of ``epoch`` of stream ``sid``: word w of Philox block
    (j, epoch, sid, 2**64 - 1) is the key of round 4j + w."""
    cdef uint64_t out[8]
    cdef int r = 0, w
    cdef uint64_t j = 0
    while r < p.rounds:
        mb_philox4x64_10_x2(j, epoch, sid, 0xFFFFFFFFFFFFFFFFULL, key0, key1, out)
        w = 0
        while w < 8 and r < p.rounds:
            p.key[r] = out[w]
            r += 1
            w += 1
        j += 2


cdef inline uint64_t epoch_batches(int mode, uint64_t n, uint64_t b) noexcept nogil:
    """Batches an epoch for "drop" (n // b) and "short" (ceil(n / b))."""
    if mode == EPOCHS_DROP:
        return n // b
    return n // b + (1 if n % b else 0)


cdef struct epoch_cursor:
    mb_perm p            # the permutation of the current epoch
    const int64_t *rows  # the epoch whole (n < MB_PERM_TABLE_N), else NULL
    uint64_t key0
    uint64_t key1
    uint64_t sid
    uint64_t epoch
    uint64_t off         # the next position within the epoch
    int mode
    int level


cdef inline void epoch_keys(epoch_cursor *c) noexcept nogil:
    """Make c ready to fill from its epoch: the round keys, or, on a short
    axis, this thread's table of the whole epoch (mb_perm_table_rows),
    computed here when it does not hold it."""
    cdef int hit
    cdef int64_t *rows
    if c.p.n < MB_PERM_TABLE_N and not c.p.wide:
        rows = mb_perm_table_rows(&c.p, c.key0, c.key1, c.sid, c.epoch, &hit)
        if not hit:
            perm_keys(&c.p, c.key0, c.key1, c.sid, c.epoch)
            mb_perm_whole(&c.p, rows, c.level)
        c.rows = rows
    else:
        c.rows = NULL
        perm_keys(&c.p, c.key0, c.key1, c.sid, c.epoch)


cdef inline void epoch_start(epoch_cursor *c, uint64_t key0, uint64_t key1, uint64_t sid,
                             int mode, uint64_t n, uint64_t digit, uint64_t b,
                             uint64_t step, uint64_t start, int rounds,
                             int wide) noexcept nogil:
    """Point c at position ``start`` of batch ``step`` (batch size b) of the
    epoch stream of [0, n): see the module docstring.  "drop" and "short"
    need 1 <= b <= n.  digit: mb_perm_digit(n) (0: computed here, a search
    of up to 32 divisions); rounds 0: the default for n."""
    cdef uint64_t q
    c.key0 = key0
    c.key1 = key1
    c.sid = sid
    c.mode = mode
    c.level = mb_simd_get()
    mb_perm_setup(&c.p, n, digit, rounds, wide)
    if mode == EPOCHS_WRAP:
        c.epoch = mb_perm_locate(step, b, start, n, &c.off)
    else:
        q = epoch_batches(mode, n, b)
        c.epoch = step // q
        c.off = (step % q) * b + start
        if c.off >= n:                # a short batch's filler
            c.off -= n
    epoch_keys(c)


cdef inline void epoch_fill(epoch_cursor *c, int64_t *out, int64_t m) noexcept nogil:
    """out[j] = the rows at the next m positions of c's stream; advances c."""
    cdef uint64_t n = c.p.n, run
    while m > 0:
        if c.off >= n:
            c.off = 0
            if c.mode == EPOCHS_WRAP:   # into the next epoch
                c.epoch += 1
                epoch_keys(c)
        run = n - c.off
        if run > <uint64_t>m:
            run = <uint64_t>m
        if c.rows != NULL:
            mb_perm_copy(out, c.rows + c.off, run, c.level)
        else:
            mb_perm_fill(&c.p, c.off, out, <int64_t>run, c.level)
        out += run
        m -= <int64_t>run
        c.off += run


cdef inline void fill_epoch(uint64_t key0, uint64_t key1, uint64_t sid, int mode,
                            uint64_t n, uint64_t digit, uint64_t b, uint64_t step,
                            uint64_t start, int64_t *out, int64_t m, int rounds,
                            int wide) noexcept nogil:
    """out[j] = the row at position start + j of batch ``step``, j < m
    (epoch_start and epoch_fill at once)."""
    cdef epoch_cursor c
    epoch_start(&c, key0, key1, sid, mode, n, digit, b, step, start, rounds, wide)
    epoch_fill(&c, out, m)
