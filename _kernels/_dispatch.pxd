# cython: language_level=3
"""The dispatcher's state and choices (``_dispatch.pyx``): how far ahead a
batch prefetches, which loop copies its short rows, how many threads it
runs on, whether it keeps the GIL, each measured on the machine at first
need.  The state has one owner, this
module; the batch runner (``_gather.pyx``) and the test hooks
(``_hooks.pyx``) read and set it through these declarations."""
from libc.stdint cimport int64_t

from mbcore._kernels._plan cimport mb_plan


cdef enum:
    CAL_SPANS = 64          # source span classes: log2 of bytes
    CAL_ROWS = 48           # row (run) size classes: log2 of bytes
    CAL_NDIST = 5           # prefetch distances tried (cal_dists)
    WALK_KINDS = 7          # walks: 1, 2, ..., 7 or more sampled outer axes
    # Rows of 16 to 272 bytes (MB_SHORT_MIN to MB_SHORT_MAX, mb_copy.h) have a
    # cell per size: the copy loop measured for them holds for their size.
    CAL_SHORT = 257
    # Sources of at most 256 KB are copied without prefetching and measure
    # only the copy: every x86-64 core of the last decade has an L2 at least
    # that big.
    CAL_MIN_SPAN = 1 << 18
    # A batch keeps the GIL when releasing and taking it back (measured at
    # first need) would add more than GIL_KEEP_PCT percent to its estimated
    # time: the same 10% that a prefetch distance must gain to be used.
    GIL_KEEP_PCT = 10
    # A cell's low byte: the rows (runs) ahead, and a flag for the copy loop.
    CELL_AHEAD = 127
    CELL_MOVES = 128        # rows of 16 to 272 bytes: 16-byte moves, not memcpy

# Calibration cells, (ps a row or block) << 8 | CELL_MOVES if the moves
# loop copies faster | rows (runs) ahead; 0: not measured.
cdef int64_t cal_cells[CAL_SPANS][CAL_ROWS]
cdef int64_t walk_cells[CAL_SPANS][CAL_ROWS][WALK_KINDS]
cdef int64_t short_cells[CAL_SPANS][CAL_SHORT]   # rows of 16 + j bytes
cdef int64_t cal_draw_ps[3]      # ps an index drawn, per vector level; 0: not measured
cdef int64_t cal_wake_ns         # a sleeping worker's start; 0: not measured
cdef int64_t cal_wake_checks     # its re-measurements (near the split bound)
cdef int64_t cal_wake_at         # when it was last measured (mb_now_ns)
cdef int64_t cal_gil_ps          # ps a GIL release and retake; 0: not measured
cdef int64_t cal_gen             # bumped by forget_calibration
cdef int cal_dists[CAL_NDIST]    # prefetch distances tried (rows ahead)

# Settings: the thread limit, and what _tune forces (tests and benchmarks).
cdef int max_threads             # set_num_threads (mbcore sets it at import)
cdef int64_t PARALLEL_MIN_BYTES  # output below which a batch is never split
cdef int64_t PARALLEL_MIN_NS     # split threshold (ns); -1: twice the wake time
cdef int forced_prefetch         # rows ahead for every batch; -1: calibrated
cdef int forced_threads          # threads for every batch; 0: calibrated
cdef int forced_gil              # 1 keep, 0 release, -1 measured
cdef int forced_moves            # short rows: 1 moves, 0 memcpy, -1 measured


# Re-checks of prefetch distances on real batches (prefetch_pick).  A cell's
# re-check times runs of rc_run[cell] batches (one run: one candidate), every
# candidate still in the race once a round, in an order shuffled each round;
# blocks of RC_ROUNDS rounds, more blocks (at most RC_BLOCKS) only while the
# even and the odd rounds pick different candidates.  A candidate is a
# distance, and for rows of 16 to 272 bytes a distance and a copy loop:
# candidate c tries cal_dists[c % CAL_NDIST] with memcpy for c < CAL_NDIST,
# with 16-byte moves from CAL_NDIST on.
cdef enum:
    RC_NCAND = 2 * CAL_NDIST   # candidates of a short-row cell; others: CAL_NDIST
    # Row cells, walk cells, then short-row cells (flat indices from RC_SHORT).
    RC_SHORT = CAL_SPANS * CAL_ROWS * (1 + WALK_KINDS)
    RC_CELLS = RC_SHORT + CAL_SPANS * CAL_SHORT
    RC_AFTER = 256         # a cell's batches before its re-check
    RC_ROUNDS = 8          # rounds a block
    RC_BLOCKS = 4          # blocks at most
    RC_RUN_NS = 10000      # a run lasts about this long (its batches, timed)
    RC_RUN_MAX = 16        # batches a run, at most
    RC_SPACE_NS = 5000000  # a round starts about this long after the one before
    RC_DONE = RC_AFTER + RC_BLOCKS * RC_ROUNDS * RC_NCAND * RC_RUN_MAX + 1

cdef int64_t rc_seen[RC_CELLS]     # batches before, then counted positions; RC_DONE: done
cdef int64_t rc_best[RC_CELLS][2][RC_NCAND]  # least fs a byte of a run, even / odd rounds
cdef int64_t rc_acc[RC_CELLS][2]   # the current run: ns, bytes
cdef int64_t rc_run[RC_CELLS]      # batches a run; 0: not set (the first batch sets it)
cdef int64_t rc_thr[RC_CELLS]      # threads of the counted batches; 0: none yet
cdef int64_t rc_out[RC_CELLS]      # bit c: candidate c is out of the race
cdef int64_t rc_blk[RC_CELLS]      # blocks decided
cdef int64_t rc_miss[RC_CELLS]     # batches in a row not counted (another thread count)
cdef int64_t rc_pace[RC_CELLS]     # ns of its first counted batch
cdef int64_t rc_round[RC_CELLS]    # rounds started
cdef int64_t rc_wait[RC_CELLS]     # batches to run before the next round
cdef int64_t rc_lead[RC_CELLS]     # 1 + the candidate those run at; 0: the cell's


cdef struct mb_prefetch:
    int ahead              # rows (runs) ahead for this batch
    int moves              # short rows: 1 moves, 0 memcpy; -1: moves_for's loop
    int cell               # flat index of its cell, -1 when the batch is not timed
    int slot               # the candidate it tries
    int half               # its round's parity
    int64_t pos            # the re-check position it fills (rc_seen)
    int64_t *c             # its cell


cdef struct mb_threads:
    int n                  # threads for this batch
    int cls                # its class, -1 when the batch is not timed
    int cand               # the candidate it tries
    bint warm              # the first batch of a run: run, not counted
    bint upkeep            # a round after the choice, not a duel's
    bint last              # the last batch of such a round: the class re-picks after it
    int half               # its round's parity
    int64_t pos            # the duel position it fills (tt_pos)
    int64_t est            # estimated one-thread ns


# Thread choices (threads_decide): a duel of the candidates per class.
cdef enum:
    TT_CLASSES = 96        # 48 estimate classes, single-axis and multi-axis apart
    TT_CANDS = 12          # candidate k: min(2**k, limit) threads
    TT_RUN = 3             # batches a run at least, the first not counted
    TT_RUN_MAX = 32        # batches a run at most
    TT_RUN_NS = 200000     # a run's estimated time: about this, within those
    TT_ROUNDS = 8          # rounds a block
    TT_BLOCKS = 4          # blocks at most
    TT_DONE = TT_BLOCKS * TT_ROUNDS * TT_CANDS * TT_RUN_MAX + 1
    TT_EVERY = 32          # after the choice: a round every TT_EVERY runs' batches
    TT_AGAIN = 64          # rounds after the choice before a new duel
    TT_NOISE = 50          # per mille: fewer threads within this of the fastest win, at most

cdef int64_t tt_best[TT_CLASSES][2][TT_CANDS]  # least time / estimate * 1024, even / odd rounds
cdef int64_t tt_acc[TT_CLASSES][2]   # the current run: ns, estimated ns
cdef int64_t tt_pos[TT_CLASSES]      # the duel's position; TT_DONE: decided
cdef int64_t tt_top[TT_CLASSES]      # candidates of the duel (0: none yet)
cdef int64_t tt_run[TT_CLASSES]      # batches a run of the duel
cdef int64_t tt_out[TT_CLASSES]      # bit k: candidate k out of the duel
cdef int64_t tt_blk[TT_CLASSES]      # blocks decided
cdef int64_t tt_pick[TT_CLASSES]     # the candidate chosen
cdef int64_t tt_seen[TT_CLASSES]     # batches since the choice


cdef inline int auto_prefetch(int64_t span) noexcept nogil:
    """The prefetch distance fixed when a plan is built, -1 for one
    calibrated at its first batch (prefetch_for): sources within
    CAL_MIN_SPAN are in the L2 and not prefetched."""
    if span <= CAL_MIN_SPAN:
        return 0
    return -1


cdef int prefetch_for(const mb_plan *p, const char *src) noexcept nogil
cdef void prefetch_pick(const mb_plan *p, const char *src, bint timed,
                        mb_prefetch *r) noexcept nogil
cdef void prefetch_record(const mb_prefetch *r, int64_t ns, int64_t nbytes,
                          int nthreads) noexcept nogil
cdef void rc_reset(int flat, int64_t thr) noexcept nogil
cdef int64_t *plan_cell(const mb_plan *p, const char *src, int *flat) noexcept nogil
cdef bint moves_for(const mb_plan *p, const char *src) noexcept nogil
cdef void threads_decide(const mb_plan *p, const char *src, int64_t nbytes, int cap,
                         mb_threads *r) noexcept nogil
cdef void threads_record(const mb_threads *r, int64_t ns) noexcept nogil
cdef int tt_choose(int n, const int64_t *h0, const int64_t *h1, int64_t *lo, int64_t *hi,
                   int *picks) noexcept nogil
cdef int64_t batch_ps(const mb_plan *p, const char *src, int64_t nbytes) noexcept nogil
cdef int64_t gil_ps() noexcept
cdef int64_t cell_for(const char *base, int64_t n, int64_t stride, int64_t block,
                      int64_t span) noexcept nogil
cdef int64_t calibrate_rows(const char *base, int64_t n, int64_t stride, int64_t block,
                            int64_t span, int64_t *times) noexcept nogil
cdef int64_t calibrate_walk(const mb_plan *p, const char *src, int64_t span,
                            int64_t *times) noexcept nogil
cdef void forget_calibration() noexcept nogil
