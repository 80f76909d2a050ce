"""shard=(rank, world): worker r draws positions [r*b/W, (r+1)*b/W) of each
global batch (the batch one process draws) on the first sampled axis.  The
shards are disjoint and their union is the global batch for every W that
divides b, checked in one process and with real worker processes
(multiprocessing), including a job resumed on another number of workers."""
import json
import multiprocessing

import numpy as np
import pytest

from mbcore import Minibatch, minibatches
from mbcore._kernels import _hooks

MODES = [dict(), dict(epochs=True), dict(epochs=True, epoch_end="drop")]
MODE_IDS = ["replace", "epochs-wrap", "epochs-drop"]


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("world", [1, 2, 4, 8, 64])
def test_shards_make_up_the_global_batch(mode, world):
    data = np.arange(1000.0 * 3).reshape(1000, 3)
    glob = Minibatch(data, 64, random_seed=3, **mode)
    parts = [Minibatch(data, 64, random_seed=3, shard=(r, world), **mode) for r in range(world)]
    for t in (0, 1, 15, 16, 2 ** 40):
        want = glob.draw(t)
        got = [p.draw(t) for p in parts]
        assert all(g.shape == (64 // world, 3) for g in got)
        np.testing.assert_array_equal(np.concatenate(got), want)
        np.testing.assert_array_equal(np.concatenate([p.indices(t)[0] for p in parts]),
                                      glob.indices(t)[0])


def test_shards_of_multi_axis_specs_split_the_first_sampled_axis():
    data = np.arange(50 * 20 * 2.0).reshape(50, 20, 2)
    for mode in MODES:
        glob = Minibatch(data, [None, 8], random_seed=5, **mode)
        parts = [Minibatch(data, [None, 8], random_seed=5, shard=(r, 4), **mode)
                 for r in range(4)]
        for t in (0, 3):
            np.testing.assert_array_equal(
                np.concatenate([p.draw(t) for p in parts], axis=1), glob.draw(t))
        glob = Minibatch(data, [10, 4], random_seed=5, **mode)        # not fused
        parts = [Minibatch(data, [10, 4], random_seed=5, shard=(r, 5), **mode)
                 for r in range(5)]
        np.testing.assert_array_equal(np.concatenate([p.draw(7) for p in parts]),
                                      glob.draw(7))


def test_shards_with_two_threads():
    data = np.arange(2e5 * 4).reshape(-1, 4)
    glob = Minibatch(data, 80000, random_seed=6, epochs=True)
    parts = [Minibatch(data, 80000, random_seed=6, epochs=True, shard=(r, 2)) for r in range(2)]
    old = _hooks._tune(parallel_min_bytes=0, parallel_min_ns=0)
    try:
        assert _hooks._batch_threads(parts[1]._sampler) == _hooks._batch_threads(
            glob._sampler)
        np.testing.assert_array_equal(np.concatenate([p.draw(3) for p in parts]), glob.draw(3))
    finally:
        _hooks._tune(*old)


def test_group_shards():
    X = np.arange(300.0).reshape(100, 3)
    y = np.arange(100)
    glob = minibatches(X, y, batch_size=20, random_seed=2, epochs=True)
    parts = [minibatches(X, y, batch_size=20, random_seed=2, epochs=True, shard=(r, 4))
             for r in range(4)]
    for _ in range(7):
        xg, yg = next(glob)
        got = [next(p) for p in parts]
        np.testing.assert_array_equal(np.concatenate([g[1] for g in got]), yg)
        np.testing.assert_array_equal(np.concatenate([g[0] for g in got]), xg)
    assert "shard=(3, 4)" in repr(parts[3])


# ------------------------------------------------------------------ processes

def _worker(args):
    """One worker: its shard of global batches [start, start + steps),
    resumed from a state dict when given."""
    rank, world, start, steps, state = args
    mb = Minibatch(np.arange(1000), 48, random_seed=11, epochs=True, shard=(rank, world))
    if state is not None:
        mb.load_state_dict(json.loads(state))
    else:
        mb.seek(start)
    out = [next(mb).tolist() for _ in range(steps)]
    return rank, json.dumps(mb.state_dict()), out


def _run(world, start, steps, state=None):
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(world) as pool:
        res = sorted(pool.map(_worker, [(r, world, start, steps, state) for r in range(world)]))
    batches = [sum((res[r][2][s] for r in range(world)), []) for s in range(steps)]
    return batches, res[0][1]


def test_worker_processes_split_each_global_batch_elastically():
    glob = Minibatch(np.arange(1000), 48, random_seed=11, epochs=True)
    want = [glob.draw(t).tolist() for t in range(12)]
    # Four workers draw steps 0-5, then the job resumes on three and on two
    # workers from a state one of the four saved.
    first, state = _run(4, 0, 6)
    assert first == want[:6]
    assert json.loads(state)["shard"] == [0, 4] and json.loads(state)["step"] == 6
    for world in (3, 2, 1):
        later, _ = _run(world, 0, 6, state)
        assert later == want[6:], world
    # No padding, no duplicates: 12 batches of 48 are 576 positions of the
    # first epoch, 576 distinct rows.
    rows = sum(want, [])
    assert len(rows) == 576 and len(set(rows)) == 576


# ------------------------------------------------------------------ errors

def test_bad_shards():
    X = np.arange(100)
    with pytest.raises(ValueError, match=r"shard must be \(rank, world\) with 0 <= rank < world, "
                                         r"got \(2, 2\)"):
        Minibatch(X, 8, shard=(2, 2))
    with pytest.raises(ValueError, match=r"got \(0, 0\)"):
        Minibatch(X, 8, shard=(0, 0))
    with pytest.raises(ValueError, match=r"got \(-1, 2\)"):
        Minibatch(X, 8, shard=(-1, 2))
    with pytest.raises(ValueError, match=r"shard=\(0, 3\): the world size 3 must divide the "
                                         r"batch size 8 of axis 0"):
        Minibatch(X, 8, shard=(0, 3))
    with pytest.raises(TypeError, match=r"shard must be a \(rank, world\) pair of ints, got 2"):
        Minibatch(X, 8, shard=2)
    with pytest.raises(TypeError, match=r"pair of ints, got \(0, True\)"):
        Minibatch(X, 8, shard=(0, True))
    with pytest.raises(ValueError, match=r"shard=\(0, 2\) needs replace=True or epochs=True"):
        Minibatch(X, 8, replace=False, shard=(0, 2))
    with pytest.raises(ValueError, match=r"cannot be combined with epoch_end='short'"):
        Minibatch(X, 8, epochs=True, epoch_end="short", shard=(0, 2))
    with pytest.raises(ValueError, match=r"world size 3 must divide"):
        minibatches(X, X, batch_size=8, shard=(1, 3))
