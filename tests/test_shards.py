"""shard=(rank, world): worker r draws positions [r*b/W, (r+1)*b/W) of each
global batch (the batch one process draws) on the first sampled axis, in
every sampling mode.  The shards are disjoint and their union is the global
batch for every W that divides b, checked in one process and with real
worker processes (multiprocessing), including a job resumed on another
number of workers; an epoch's short last batch of L rows gives worker r
positions [r*L//W, (r+1)*L//W)."""
import json
import multiprocessing

import numpy as np
import pytest

from mbcore import BatchSpec, Minibatch, minibatches
from mbcore._kernels import _hooks

MODES = [dict(), dict(replace=False), dict(epochs=True), dict(epochs=True, epoch_end="drop"),
         dict(epochs=True, epoch_end="short")]
MODE_IDS = ["replace", "noreplace", "epochs-wrap", "epochs-drop", "epochs-short"]


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("world", [1, 2, 4, 8, 64])
def test_shards_make_up_the_global_batch(mode, world):
    data = np.arange(1000.0 * 3).reshape(1000, 3)
    glob = Minibatch(data, 64, random_seed=3, **mode)
    parts = [Minibatch(data, 64, random_seed=3, shard=(r, world), **mode) for r in range(world)]
    # 1000 rows in batches of 64: with "short", batch 15 holds the last 40
    for t in (0, 1, 15, 16, 2 ** 40):
        want = glob.draw(t)
        got = [p.draw(t) for p in parts]
        assert all(g.shape[1:] == (3,) for g in got)
        if len(want) == 64:
            assert all(g.shape == (64 // world, 3) for g in got)
        np.testing.assert_array_equal(np.concatenate(got), want)
        np.testing.assert_array_equal(np.concatenate([p.indices(t)[0] for p in parts]),
                                      glob.indices(t)[0])


@pytest.mark.parametrize("world", [2, 4, 16])
def test_noreplace_shards_are_disjoint(world):
    # A batch of 512 of 600 rows: drawn whole it has no repeats, so the
    # shards have none and share no row.
    data = np.arange(600)
    glob = Minibatch(data, 512, random_seed=4, replace=False)
    parts = [Minibatch(data, 512, random_seed=4, replace=False, shard=(r, world))
             for r in range(world)]
    for t in (0, 9, 2 ** 63):
        got = [p.draw(t) for p in parts]
        rows = np.concatenate(got)
        assert len(np.unique(rows)) == 512
        np.testing.assert_array_equal(rows, glob.draw(t))
        for r, g in enumerate(got):
            np.testing.assert_array_equal(parts[r].indices(t)[0], g)
            assert not set(g.tolist()) & set(np.concatenate(got[:r] + got[r + 1:]).tolist())


@pytest.mark.parametrize("world", [3, 4, 7, 8])
def test_short_batch_split_among_workers(world):
    # Batches of b, n < 2b: batch 1 of each epoch holds the last n - b rows;
    # with 3 rows left, worlds above 3 give some workers an empty batch.
    b = 54 if world == 3 else 56
    for n in (100, b + 3):
        data = np.arange(n * 2).reshape(n, 2)
        glob = Minibatch(data, b, random_seed=8, epochs=True, epoch_end="short")
        parts = [Minibatch(data, b, random_seed=8, epochs=True, epoch_end="short",
                           shard=(r, world)) for r in range(world)]
        left = n - b
        got = [next(p) for p in parts], [next(p) for p in parts]
        want = next(glob), next(glob)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(np.concatenate(g), w)
        lengths = [len(g) for g in got[1]]
        assert lengths == [(r + 1) * left // world - r * left // world for r in range(world)]
        assert all(g.shape == (m, 2) for g, m in zip(got[1], lengths))
        if left < world:
            assert 0 in lengths
        # the epoch: every row once, in the shards of its two batches
        rows = np.concatenate(got[0] + got[1])[:, 0] // 2
        assert sorted(rows.tolist()) == list(range(n))
        # last_indices and indices(t) of the short batch are the shard's
        for p, g in zip(parts, got[1]):
            np.testing.assert_array_equal(data[p.last_indices[0]], g)
            np.testing.assert_array_equal(data[p.indices(1)[0]], g)
        assert all(p.epoch == 1 for p in parts)


def test_short_shards_of_a_group_and_a_batch_spec():
    X = np.arange(90.0).reshape(30, 3)
    y = np.arange(30)
    glob = minibatches(X, y, batch_size=8, random_seed=2, epochs=True, epoch_end="short")
    parts = [minibatches(X, y, batch_size=8, random_seed=2, epochs=True, epoch_end="short",
                         shard=(r, 4)) for r in range(4)]
    specs = [BatchSpec(8, random_seed=2, epochs=True, epoch_end="short", shard=(r, 4))
             for r in range(4)]
    for t in range(9):             # 30 rows: 3 batches of 8, then 6 (1, 2, 1, 2 a shard)
        xg, yg = next(glob)
        got = [next(p) for p in parts]
        from_specs = [s.draw(t, X, y) for s in specs]
        for k, want in enumerate((xg, yg)):
            np.testing.assert_array_equal(np.concatenate([g[k] for g in got]), want)
            np.testing.assert_array_equal(np.concatenate([g[k] for g in from_specs]), want)
        np.testing.assert_array_equal(
            np.concatenate([s.indices(t, X.shape)[0] for s in specs]), yg)
        if t % 4 == 3:
            assert [len(g[1]) for g in got] == [1, 2, 1, 2]


def test_short_shards_of_a_multi_axis_spec():
    # The shard splits the first sampled axis (axis 1, 20 entries in
    # batches of 8: the third batch of an epoch holds 4); axis 2's batch of
    # 3 of 5 entries is short every second batch (2 entries), whole in
    # every shard.
    data = np.arange(4 * 20 * 5.0).reshape(4, 20, 5)
    glob = Minibatch(data, [None, 8, 3], random_seed=5, epochs=True, epoch_end="short")
    parts = [Minibatch(data, [None, 8, 3], random_seed=5, epochs=True, epoch_end="short",
                       shard=(r, 4)) for r in range(4)]
    for t in range(7):
        want = glob.draw(t)
        got = [p.draw(t) for p in parts]
        np.testing.assert_array_equal(np.concatenate(got, axis=1), want)
        assert all(g.shape[2] == want.shape[2] for g in got)


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


@pytest.mark.parametrize("mode", [dict(replace=False), dict(epochs=True, epoch_end="short")],
                         ids=["noreplace", "epochs-short"])
def test_state_of_one_world_resumes_another(mode):
    # 70 rows in batches of 24: with "short", every third batch holds 22.
    data = np.arange(70)
    glob = Minibatch(data, 24, random_seed=12, **mode)
    want = [glob.draw(t) for t in range(10)]
    four = [Minibatch(data, 24, random_seed=12, shard=(r, 4), **mode) for r in range(4)]
    for t in range(5):
        np.testing.assert_array_equal(np.concatenate([next(p) for p in four]), want[t])
    state = json.loads(json.dumps(four[3].state_dict()))
    for world in (1, 2, 3, 6):
        parts = [Minibatch(data, 24, random_seed=12, shard=(r, world), **mode)
                 for r in range(world)]
        for p in parts:
            p.load_state_dict(state)
        for t in range(5, 10):
            np.testing.assert_array_equal(np.concatenate([next(p) for p in parts]), want[t])


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
    # every mode keeps the rule that the world divides the batch
    with pytest.raises(ValueError, match=r"shard=\(1, 3\): the world size 3 must divide"):
        Minibatch(X, 8, replace=False, shard=(1, 3))
    with pytest.raises(ValueError, match=r"shard=\(0, 3\): the world size 3 must divide"):
        Minibatch(X, 8, epochs=True, epoch_end="short", shard=(0, 3))
    with pytest.raises(ValueError, match=r"shard=\(0, 3\): the world size 3 must divide"):
        BatchSpec(8, replace=False, shard=(0, 3))
    with pytest.raises(ValueError, match=r"world size 3 must divide"):
        minibatches(X, X, batch_size=8, shard=(1, 3))
