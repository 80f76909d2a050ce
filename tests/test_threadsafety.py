"""Threads that draw while another replaces the data: every step is drawn
exactly once, and every batch comes wholly from one version of the data.

Every version of the data has the same length, so the indices of batch t do
not depend on the version: a batch's indices (its values modulo the length)
tell its step, and its values divided by the length tell the version.
"""
import collections
import sys
import threading
import time

import numpy as np
import pytest

from mbcore import Minibatch, minibatches

N = 1000                 # rows of every version
SET_VALUES = 3000        # set_value calls per run, while the threads draw
DRAWERS = 8


def _version(v, width=1):
    return np.repeat(v * N + np.arange(N, dtype=np.float64), width).reshape(N, width)


def _steps_of(indices_of, total):
    """{bytes of the indices of batch t: t} for t < total; asserts they are
    distinct (so that a batch's indices identify its step)."""
    table = {indices_of(t).tobytes(): t for t in range(total)}
    assert len(table) == total
    return table


def _run(draw, set_value, n_drawers=DRAWERS, n_set=SET_VALUES):
    """This thread calls set_value n_set times while n_drawers threads call
    draw(), each once per set_value call (so that draws and replacements
    interleave from the first to the last), with a short switch interval;
    returns the batches of each drawer."""
    stop = threading.Event()
    calls = [0]                            # set_value calls so far
    results = [[] for _ in range(n_drawers)]
    errors = []
    started = threading.Barrier(n_drawers + 1)

    def work(k):
        try:
            started.wait()
            seen = -1
            while not stop.is_set():
                if calls[0] == seen:
                    time.sleep(0)          # lets the other threads run
                    continue
                seen = calls[0]
                results[k].append(draw(k))
        except BaseException as e:          # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_drawers)]
    for th in threads:
        th.start()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        started.wait()
        for v in range(1, n_set + 1):
            set_value(v)
            calls[0] = v
    finally:
        stop.set()
        sys.setswitchinterval(interval)
        for th in threads:
            th.join()
    assert not errors, errors[:3]
    return results


def _check(batches, total, table, versions):
    """Every step < total drawn once; each batch from one version."""
    steps = collections.Counter()
    for batch in batches:
        v = np.unique(batch // N)
        assert len(v) == 1, f"a batch mixes versions {v}"
        assert 0 <= v[0] <= versions
        idx = (batch % N).astype(np.int64)
        steps[table[np.ascontiguousarray(idx[:, 0]).tobytes()]] += 1
    assert len(steps) == total and set(steps.values()) == {1}, (
        f"{total - len(steps)} steps never drawn, "
        f"{sum(c - 1 for c in steps.values())} drawn again")


@pytest.mark.parametrize("batch_size, replace", [
    (8, True),             # keeps the GIL
    (600, False),          # releases it; index scratch beyond the stack buffer
], ids=["small", "noreplace-nogil"])
def test_set_value_racing_next_draws_every_step_once(batch_size, replace):
    mb = Minibatch(_version(0), batch_size, random_seed=11, replace=replace)
    outs = [np.empty(mb.shape) for _ in range(DRAWERS)]
    calls = [0] * DRAWERS

    def draw(k):
        calls[k] += 1
        return (next(mb) if calls[k] % 2 else mb.next(out=outs[k])).copy()

    results = _run(draw, lambda v: mb.set_value(_version(v)))
    total = sum(len(r) for r in results)
    assert mb.step == total
    fresh = Minibatch(_version(0), batch_size, random_seed=11, replace=replace)
    table = _steps_of(lambda t: fresh.indices(t)[0], total)
    _check([b for r in results for b in r], total, table, SET_VALUES)
    np.testing.assert_array_equal(mb.last_indices[0], fresh.indices(total - 1)[0])


def test_group_set_value_racing_next_draws_every_step_once():
    group = minibatches(_version(0, 3), _version(0)[:, 0], batch_size=8, random_seed=5)

    def draw(k):
        return next(group)

    def set_value(v):
        group.set_value(_version(v, 3), _version(v)[:, 0])

    results = _run(draw, set_value, n_set=SET_VALUES // 2)
    total = sum(len(r) for r in results)
    assert group.step == total
    fresh = Minibatch(_version(0)[:, 0], 8, random_seed=5)
    table = _steps_of(lambda t: fresh.indices(t)[0], total)
    pairs = [xy for r in results for xy in r]
    for xb, yb in pairs:                   # X and y from the same version and rows
        np.testing.assert_array_equal(xb[:, 0], yb)
    _check([xb for xb, _ in pairs], total, table, SET_VALUES // 2)

