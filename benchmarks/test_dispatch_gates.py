"""Dispatch gates (run by ``make gates``): the variant the kernel picks for a
batch runs within 10% of the best variant found by brute force, on this
machine, in the same run.

For each case, every prefetch distance the calibration tries (0, 4, 8, 16,
32 rows, or runs of a multi-axis walk, ahead) is crossed with every thread
count up to the limit (1, 2, 4, ... and the limit itself), for the
small batches (where the GIL is kept or released) with the GIL kept and
released, and for rows of 16 to 272 bytes with both copy loops (16-byte
moves, memcpy), each forced with ``_tune`` on a Minibatch of its
own (its own seed, so that no variant finds rows another drew in the
cache); the dispatcher's own choice ("auto") is one more Minibatch.  All are
timed with ``interleaved_min`` (20 batches a call).  The gate asserts
``auto <= NEED * best``.  A measurement that misses it is taken again head
to head: auto against the HEAD_TO_HEAD fastest variants, HEAD_ROUNDS rounds
(the fastest of many variants timed with noise is biased low); a
measurement is repeated up to ATTEMPTS times, and the best of them counts,
since a burst of load on a shared machine can spoil one.  Each test prints
the times, the pick and the best variant (``pytest -s``), and for a miss
the class's prefetch re-check and thread duels.
"""
import time

import numpy as np
import pytest

import mbcore
from mbcore._kernels import _hooks
from timing import interleaved_min

NEED = 1.10
ATTEMPTS = 3
ROUNDS = 11
HEAD_TO_HEAD = 3
HEAD_ROUNDS = 31
DISTANCES = (0, 4, 8, 16, 32)
BATCHES_A_CALL = 20


def thread_counts():
    cap = mbcore.get_num_threads()
    counts = {1, cap}
    t = 2
    while t < cap:
        counts.add(t)
        t *= 2
    return sorted(counts)


# (rows n, row width w, batch b): sources in the L2 (up to 1 MB), in the L3
# (8-10 MB) and in memory (80 MB or more); batches from 128 rows to 1e5.
SINGLE = [
    (10**5, 1, 128), (10**6, 1, 128), (10**6, 1, 10**4), (10**7, 1, 10**5),
    (10**4, 10, 128), (10**5, 10, 128), (10**5, 10, 4096), (10**6, 10, 1024),
    (10**6, 10, 10**4),
    (2 * 10**4, 64, 512), (2 * 10**4, 64, 2048), (2 * 10**5, 64, 2048),
    (10**4, 100, 128), (10**5, 100, 4096),
]
# Small batches, around the line where the GIL is kept (a release and retake
# costing 10% of the batch).
SMALL = [(10**4, 1, 128), (10**4, 10, 128), (10**4, 1, 2048), (10**4, 10, 512)]
# Multi-axis walks: runs of 512 bytes from an 8 MB source, runs of 16 bytes,
# and runs of 80 bytes that jump every 40 rows from a 92 MB source.
MULTI = [((2000, 500), [1024, 64]), ((2000, 500), [64, 2]),
         ((10, 20, 30, 40, 50), [2, None, 20, None, 10])]


def single_id(case):
    n, w, b = case
    return f"n{n:.0e}-w{w}-b{b}".replace("e+0", "e")


# Rows of 16 to 272 bytes (16, 80, 144, 272): the copy loop, 16-byte moves
# or memcpy, crossed with the distances and thread counts.
LOOPS = [(10**5, 2, 128), (10**5, 10, 128), (10**6, 10, 1024), (10**5, 18, 512),
         (10**5, 34, 128)]
MULTI_IDS = ["2000x500-b1024x64", "2000x500-b64x2", "10x20x30x40x50-b2x20x10"]


def _variants(data, batch_size, gil, loops):
    """name -> callable drawing BATCHES_A_CALL batches under its setting."""
    impls, pick = {}, None
    gils = ("keep", "release") if gil else ("auto",)
    loop_modes = ("moves", "memcpy") if loops else ("auto",)
    settings = [("auto", "auto", 0, "auto", "auto")] + [
        (f"d={d} t={t}" + (f" gil={g}" if gil else "") + (f" loop={lp}" if loops else ""),
         d, t, g, lp)
        for d in DISTANCES for t in thread_counts() for g in gils for lp in loop_modes]
    for seed, (name, d, t, g, lp) in enumerate(settings):
        mb = mbcore.Minibatch(data, batch_size=batch_size, random_seed=100 + seed)
        nxt = mb.__next__
        if name == "auto":
            pick = mb._sampler

        def run(nxt=nxt, d=d, t=t, g=g, lp=lp):
            old = _hooks._tune(prefetch=d, threads=t, gil=g, loop=lp)
            for _ in range(BATCHES_A_CALL):
                nxt()
            _hooks._tune(*old)
        impls[name] = run
    return impls, pick


def _gate(data, batch_size, label, gil=False, loops=False):
    impls, sampler = _variants(data, batch_size, gil, loops)
    best_ratio, shown = float("inf"), None
    for attempt in range(ATTEMPTS):
        t = interleaved_min(impls, rounds=ROUNDS, target=0.01)
        best = min((v, k) for k, v in t.items() if k != "auto")
        ratio = t["auto"] / best[0]
        head = None
        if ratio > NEED:
            # The fastest of 10-40 variants, each timed with noise, is biased
            # low (on a loaded machine two Minibatches of one variant differ
            # by up to 10% here): a miss is timed again, auto head to head
            # with the HEAD_TO_HEAD fastest variants, HEAD_ROUNDS rounds.
            top = sorted((v, k) for k, v in t.items() if k != "auto")[:HEAD_TO_HEAD]
            head = interleaved_min({"auto": impls["auto"], **{k: impls[k] for _, k in top}},
                                   rounds=HEAD_ROUNDS, target=0.01)
            best = min((v, k) for k, v in head.items() if k != "auto")
            ratio = head["auto"] / best[0]
        if ratio < best_ratio:
            best_ratio, shown = ratio, (head or t, best, t)
        if ratio <= NEED:
            break
        time.sleep(0.5)
    t, best, first = shown
    info = _hooks._dispatch_info()
    recheck = _hooks._prefetch_recheck(sampler)
    duels = {c: (d["pick"], d["times"]) for c, d in _hooks._thread_duels().items()}
    print(f"{label}: auto (d={_hooks._prefetch_ahead(sampler)} "
          f"t={_hooks._batch_threads(sampler)} "
          f"gil={'keep' if _hooks._keeps_gil(sampler) else 'release'} "
          f"loop={_hooks._copy_loop(sampler)}) {t['auto'] / BATCHES_A_CALL * 1e6:.2f} us, "
          f"best {best[1]} {best[0] / BATCHES_A_CALL * 1e6:.2f} us: {best_ratio:.2f}x the best "
          f"(wake {info['wake_ns']} ns, GIL round trip {(info['gil_ps'] or 0) / 1000:.0f} ns); "
          + ", ".join(f"{k} {v / BATCHES_A_CALL * 1e6:.2f}" for k, v in sorted(first.items()))
          + ("" if t is first else "; head to head: " + ", ".join(
              f"{k} {v / BATCHES_A_CALL * 1e6:.2f}" for k, v in sorted(t.items())))
          + (f"; re-check {recheck}" if best_ratio > NEED else "")
          + (f"; thread duels {duels}" if best_ratio > NEED else ""))
    assert best_ratio <= NEED, (
        f"{label}: the dispatcher's pick takes {best_ratio:.2f}x the best variant "
        f"({best[1]}) > {NEED}x")


@pytest.mark.parametrize("case", SINGLE, ids=single_id)
def test_dispatch_within_10_percent_of_brute_force(case):
    n, w, b = case
    data = np.full((n,) if w == 1 else (n, w), 1.5)
    _gate(data, b, single_id(case))


@pytest.mark.parametrize("case", SMALL, ids=single_id)
def test_gil_dispatch_within_10_percent_of_brute_force(case):
    n, w, b = case
    data = np.full((n,) if w == 1 else (n, w), 1.5)
    _gate(data, b, single_id(case), gil=True)


@pytest.mark.parametrize("shape, spec", MULTI, ids=MULTI_IDS)
def test_multi_axis_dispatch_within_10_percent_of_brute_force(shape, spec):
    data = np.full(shape, 1.5)
    _gate(data, spec, f"{shape}{spec}")


@pytest.mark.parametrize("case", LOOPS, ids=single_id)
def test_copy_loop_within_10_percent_of_brute_force(case):
    n, w, b = case
    data = np.full((n, w), 1.5)
    _gate(data, b, single_id(case), loops=True)


# The wake time of a pool worker bounds which batches may be split (twice it
# at least).  A measurement taken while the other CPUs are busy reads several
# times the idle wake-up; batches estimated within 4x the bound measure it
# again and keep the smaller, the k-th 10 ms * 2**k after the one before, and
# if still under the bound they time one and two threads.
NEAR_BATCH = (10**5, 100, 4096)     # about 100-200 us on one thread


def _near_bound_minibatch():
    n, w, b = NEAR_BATCH
    return mbcore.Minibatch(np.full((n, w), 1.5), batch_size=b, random_seed=3)


def _one_thread_ns(mb):
    """The best of 5 batches of mb on one thread, ns."""
    old = _hooks._tune(threads=1)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter_ns()
        next(mb)
        best = min(best, time.perf_counter_ns() - t0)
    _hooks._tune(*old)
    return int(best)


@pytest.mark.skipif(mbcore.get_num_threads() < 2, reason="one CPU: nothing is split")
def test_a_wake_time_measured_under_load_is_measured_again_near_the_bound():
    mb = _near_bound_minibatch()
    next(mb)                                  # calibrations, the wake time measured
    batch = _one_thread_ns(mb)
    # As if measured under load, at the batch's own time: the bound (twice
    # it) forbids the split, and the batch is within 4x the bound.
    _hooks._set_wake(batch)
    next(mb)
    info = _hooks._dispatch_info()
    try:
        assert info["wake_checks"] == 1, info
        # An idle pool worker wakes within a few microseconds (docs/tuning.md).
        assert info["wake_ns"] < batch, (batch, info)
        for _ in range(5):                    # the next check waits 20 ms
            next(mb)
        assert _hooks._dispatch_info()["wake_checks"] == 1
    finally:
        _hooks._forget_calibration()


@pytest.mark.skipif(mbcore.get_num_threads() < 2, reason="one CPU: nothing is split")
def test_a_wake_time_far_above_a_batch_is_not_measured_again():
    mb = _near_bound_minibatch()
    next(mb)
    _hooks._set_wake(10**9)                   # bound 2 s: the batch is 10^4 times under
    next(mb)
    info = _hooks._dispatch_info()
    _hooks._forget_calibration()
    assert info["wake_checks"] == 0 and info["wake_ns"] == 10**9, info


@pytest.mark.skipif(mbcore.get_num_threads() < 2, reason="one CPU: nothing is split")
def test_a_batch_near_the_bound_tries_two_threads():
    # The wake time stays at the batch's own estimated time (no
    # re-measurement left): the bound, twice it, is above the batch, which
    # is within 4x of it, so its class times one and two threads and the
    # times choose.
    _hooks._forget_calibration()
    mb = _near_bound_minibatch()
    next(mb)
    _hooks._set_wake(_hooks._batch_estimate_ns(mb._sampler), remeasure=False)
    seen = set()
    for _ in range(200):                      # rounds of runs of each count
        seen.add(_hooks._batch_threads(mb._sampler))
        next(mb)
    info = _hooks._dispatch_info()
    _hooks._forget_calibration()
    assert seen == {1, 2}, (seen, info)


@pytest.mark.skipif(mbcore.get_num_threads() < 2, reason="one CPU: nothing is split")
def test_a_batch_far_under_the_bound_stays_on_one_thread():
    _hooks._forget_calibration()
    mb = _near_bound_minibatch()
    next(mb)
    _hooks._set_wake(100 * _hooks._batch_estimate_ns(mb._sampler), remeasure=False)
    seen = set()
    for _ in range(200):
        seen.add(_hooks._batch_threads(mb._sampler))
        next(mb)
    _hooks._forget_calibration()
    assert seen == {1}, seen


# A class's prefetch distance comes from one calibration of about a
# millisecond; after the class's first RC_AFTER batches, real batches
# re-check it (every distance timed in runs of batches, interleaved rounds;
# the fastest kept, or 0 within the measured noise of it).  The
# 10x20x30x40x50 walk [2, None, 20, None, 10] (80-byte runs that jump far,
# from 92 MB) runs 2-3x faster 16-32 runs ahead than with none
# (docs/tuning.md): its class forced to 0 is corrected.
def _recheck(mb, ahead, loop=None):
    """Force mb's class to ``ahead`` (and its copy loop to ``loop``, None:
    kept), run batches until its re-check ends; returns (the distance then,
    the re-check's state, us a batch before and during the re-check)."""
    after, most = _hooks._set_prefetch_cell(mb._sampler, ahead, loop=loop)
    t0 = time.perf_counter()
    for _ in range(after):
        next(mb)
    assert _hooks._prefetch_ahead(mb._sampler) == ahead
    assert loop is None or _hooks._copy_loop(mb._sampler) == loop
    mid = time.perf_counter()
    k = 0
    stop = time.perf_counter() + 20.0     # its rounds start 5 ms apart, 32 at most
    while not _hooks._prefetch_recheck(mb._sampler)["done"] and time.perf_counter() < stop:
        next(mb)
        k += 1
    end = time.perf_counter()
    state = _hooks._prefetch_recheck(mb._sampler)
    return (state["ahead"], state, (mid - t0) / after * 1e6,
            (end - mid) / max(k, 1) * 1e6)


def test_a_bad_prefetch_cell_is_corrected_by_real_batches():
    _hooks._forget_calibration()
    mb = mbcore.Minibatch(np.full((10, 20, 30, 40, 50), 1.5),
                          batch_size=[2, None, 20, None, 10], random_seed=5)
    next(mb)
    try:
        ahead, state, before, during = _recheck(mb, 0)
        print(f"re-check: forced 0, picked {ahead} runs ahead ({before:.0f} us a batch "
              f"before, {during:.0f} us during the re-check): {state}")
        assert state["done"] and ahead > 0, state
    finally:
        _hooks._forget_calibration()


# Batches split over threads are re-checked too, timed whole at one thread
# count: 8-byte rows from 80 MB, b=1e5 (800 KB, split on two threads) run
# 1.5-1.9x slower 4 rows ahead than with none or 32 ahead (docs/tuning.md).
@pytest.mark.skipif(mbcore.get_num_threads() < 2, reason="one CPU: nothing is split")
def test_a_bad_prefetch_cell_of_split_batches_is_corrected():
    _hooks._forget_calibration()
    mb = mbcore.Minibatch(np.full(10**7, 1.5), batch_size=10**5, random_seed=5)
    next(mb)
    old = _hooks._tune(threads=2)
    try:
        ahead, state, before, during = _recheck(mb, 4)
        print(f"re-check of split batches: forced 4, picked {ahead} rows ahead "
              f"({before:.0f} us a batch before, {during:.0f} us during the re-check): {state}")
        assert state["done"] and state["threads"] == 2 and ahead != 4, state
    finally:
        _hooks._tune(*old)
        _hooks._forget_calibration()


# The copy loop of rows of 16 to 272 bytes is re-checked with the distance:
# a class whose cell holds the slower loop is corrected by real batches.
# Which loop is faster depends on the machine (docs/tuning.md), so the gate
# first times both head to head at the cell's distance and forces the
# slower; a case whose loops lie within LOOP_GAP of each other here has no
# wrong loop to correct, and the gate says so and passes nothing off as
# checked (pytest.skip).
LOOP_CASE = (10**5, 10, 128)     # 80-byte rows from 8 MB: 1.2x apart on Zen 5
LOOP_GAP = 1.15


def test_a_bad_copy_loop_is_corrected_by_real_batches():
    n, w, b = LOOP_CASE
    _hooks._forget_calibration()
    data = np.full((n, w), 1.5)
    mb = mbcore.Minibatch(data, batch_size=b, random_seed=5)
    next(mb)
    ahead = _hooks._prefetch_ahead(mb._sampler)
    impls = {}
    for seed, lp in enumerate(("moves", "memcpy")):
        nxt = mbcore.Minibatch(data, batch_size=b, random_seed=50 + seed).__next__

        def run(nxt=nxt, lp=lp):
            old = _hooks._tune(prefetch=ahead, threads=1, loop=lp)
            for _ in range(BATCHES_A_CALL):
                nxt()
            _hooks._tune(*old)
        impls[lp] = run
    t = interleaved_min(impls, rounds=HEAD_ROUNDS, target=0.01)
    slow, fast = sorted(t, key=t.get, reverse=True)
    gap = t[slow] / t[fast]
    if gap < LOOP_GAP:
        _hooks._forget_calibration()
        pytest.skip(f"{single_id(LOOP_CASE)} at {ahead} rows ahead: {slow} takes {gap:.2f}x "
                    f"{fast} on this machine, within {LOOP_GAP}x: no wrong loop to correct")
    try:
        _, state, before, during = _recheck(mb, ahead, loop=slow)
        print(f"loop re-check at {ahead} rows ahead: {slow} {gap:.2f}x {fast}; forced "
              f"{slow}, picked {state['loop']} {state['ahead']} rows ahead ({before:.2f} us a "
              f"batch before, {during:.2f} us during the re-check): {state}")
        assert state["done"] and state["loop"] == fast, state
    finally:
        _hooks._forget_calibration()

