"""BatchSpec: the public spec object graph adapters build on."""
import pickle

import numpy as np
import pytest

import twins
from mbcore import BatchSpec, Minibatch, minibatches


@pytest.fixture
def xy():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    y = rng.normal(size=50)
    return X, y


SPECS = [4, [4], [3, None], [(5, 7), ...], [..., 2], [None, 2], [(3, 1), (2, 9)]]


@pytest.mark.parametrize("batch_size", SPECS, ids=repr)
@pytest.mark.parametrize("replace", [True, False])
def test_draw_equals_minibatch_step_for_step(batch_size, replace):
    data = np.arange(7 * 6 * 5, dtype=np.float32).reshape(7, 6, 5)
    spec = BatchSpec(batch_size, random_seed=11, replace=replace)
    mb = Minibatch(data, batch_size, random_seed=11, replace=replace)
    for t in range(5):
        (got,) = spec.draw(t, data)
        twins.assert_same_array(got, next(mb))
    assert spec.batch_shape(data.shape) == mb.shape
    assert spec.total_size(data.shape) == mb.total_size
    for t in (0, 3, 2 ** 64 - 1):
        for a, b in zip(spec.indices(t, data.shape), mb.indices(t)):
            assert (a is None and b is None) or np.array_equal(a, b)


def test_draw_equals_minibatches_and_fills_out(xy):
    X, y = xy
    spec = BatchSpec(8, random_seed=5)
    group = minibatches(X, y, batch_size=8, random_seed=5)
    outs = [np.empty(spec.batch_shape(a.shape), a.dtype) for a in (X, y)]
    for t in range(4):
        got = spec.draw(t, X, y, out=outs)
        assert got[0] is outs[0] and got[1] is outs[1]
        for a, b in zip(got, next(group)):
            twins.assert_same_array(a, b)
        assert np.array_equal(got[0], X[spec.indices(t, X.shape)[0]])


def test_draw_follows_a_new_array_of_another_length(xy):
    X, _ = xy
    spec = BatchSpec(6, random_seed=2)
    spec.draw(0, X)
    longer = np.arange(1000.0)
    (got,) = spec.draw(3, longer)
    twins.assert_same_array(got, Minibatch(longer, 6, random_seed=2).draw(3))
    X[:] = 0.0     # in place: the same object, read afresh
    assert not spec.draw(1, X)[0].any()


def test_grammar_errors_at_construction():
    with pytest.raises(TypeError, match="batch_size must be an int"):
        BatchSpec(2.5)
    with pytest.raises(ValueError, match="at most one Ellipsis"):
        BatchSpec([..., 2, ...])
    with pytest.raises(ValueError, match="must be positive"):
        BatchSpec(0)
    with pytest.raises(TypeError, match="random_seed must be an int"):
        BatchSpec(2, random_seed="a")
    with pytest.raises(TypeError, match="replace must be a bool"):
        BatchSpec(2, replace=1)


def test_prepare_errors_name_the_value():
    spec = BatchSpec([2, 2], replace=False)
    with pytest.raises(ValueError, match=r"X must have at least ndim=2"):
        spec.prepare(np.zeros(5), what="X")
    with pytest.raises(ValueError, match=r"batch_size must be <= 1 \(the length of axis 1 of X\) "
                                         r"when replace=False, got 2"):
        spec.prepare(np.zeros((5, 1)), what="X")
    with pytest.raises(TypeError, match="X must not hold Python objects"):
        spec.prepare(np.zeros((5, 5), object), what="X")
    with pytest.raises(ValueError, match="X has an empty sampled axis 0"):
        spec.prepare(np.zeros((0, 5)), what="X")
    arr = np.zeros((5, 5))
    assert spec.prepare(arr) is arr


def test_check_aligned_names_lengths():
    spec = BatchSpec(2)
    spec.check_aligned([(5, 3), (5,)])
    with pytest.raises(ValueError, match=r"same length along sampled axis 0, got X: 5, y: 4"):
        spec.check_aligned([(5, 3), (4,)], names=["X", "y"])
    with pytest.raises(ValueError, match=r"arrays\[0\]: 5, arrays\[1\]: 4"):
        spec.draw(0, np.zeros(5), np.zeros(4))


def test_step_checks():
    spec = BatchSpec(2)
    assert spec.check_step(np.uint64(2 ** 64 - 1)) == 2 ** 64 - 1
    with pytest.raises(TypeError, match="step must be an int"):
        spec.draw(1.0, np.zeros(4))
    with pytest.raises(ValueError, match=r"step must be in \[0, 2\*\*64\)"):
        spec.draw(-1, np.zeros(4))


def test_equality_hash_pickle():
    a = BatchSpec([3, None], random_seed=4)
    b = BatchSpec([3, None], random_seed=4)
    assert a == b and hash(a) == hash(b)
    assert a != BatchSpec([3, None], random_seed=5)
    assert a != BatchSpec([3, None], random_seed=4, replace=False)
    c = pickle.loads(pickle.dumps(a))
    assert c == a and repr(c) == repr(a)
    data = np.arange(12.0).reshape(4, 3)
    twins.assert_same_array(c.draw(7, data)[0], a.draw(7, data)[0])


def test_bind_equals_draw_and_reads_in_place_changes(xy):
    X, y = xy
    spec = BatchSpec(6, random_seed=9)
    f = spec.bind(X, y)
    outs = [np.empty((6, 3)), np.empty(6)]
    for t in (0, 1, 2 ** 64 - 1):
        got = f(t, outs)
        assert got[0] is outs[0]
        for a, b in zip(got, spec.draw(t, X, y)):
            twins.assert_same_array(a, b)
    y[:] = 1.0
    assert (f(3)[1] == 1.0).all()
    with pytest.raises(OverflowError):
        f(-1)
    with pytest.raises(ValueError, match="same length along sampled axis 0"):
        spec.bind(X, y[:-1])
    with pytest.raises(ValueError, match="at least one array"):
        spec.bind()


MODES = [dict(epochs=True), dict(epochs=True, epoch_end="drop"),
         dict(epochs=True, epoch_end="short"), dict(shard=(1, 2)),
         dict(epochs=True, shard=(0, 2)), dict(epochs=True, epoch_end="drop", shard=(1, 2)),
         dict(epochs=True, replace=False)]


@pytest.mark.parametrize("batch_size", [4, [4, None], [(4, 3), 2], [..., 2]], ids=repr)
@pytest.mark.parametrize("kw", MODES, ids=repr)
def test_modes_draw_equal_minibatch_step_for_step(batch_size, kw):
    data = np.arange(7 * 6 * 5, dtype=np.float32).reshape(7, 6, 5)
    spec = BatchSpec(batch_size, random_seed=11, **kw)
    mb = Minibatch(data, batch_size, random_seed=11, **kw)
    f = spec.bind(data)
    # 12 steps cross several epoch ends (7 or 5 entries, 4 or 2 a batch).
    for t in range(12):
        assert spec.epoch(t, data.shape) == mb.epoch      # the next batch's epoch
        (got,) = spec.draw(t, data)
        want = next(mb)
        twins.assert_same_array(got, want)
        twins.assert_same_array(f(t)[0], want)
        for a, b in zip(spec.indices(t, data.shape), mb.indices(t)):
            assert (a is None and b is None) or np.array_equal(a, b)
    assert spec.batch_shape(data.shape) == mb.shape
    assert spec.total_size(data.shape) == mb.total_size
    assert spec.replace == mb.replace
    mb.seek(9)
    assert spec.epoch(9, data.shape) == mb.epoch
    assert spec.state_dict(9, data.shape) == mb.state_dict()


@pytest.mark.parametrize("kw", MODES[:6], ids=repr)
def test_modes_draw_equal_minibatches_and_fill_out(xy, kw):
    X, y = xy
    spec = BatchSpec(10, random_seed=5, **kw)
    group = minibatches(X, y, batch_size=10, random_seed=5, **kw)
    outs = [np.empty(spec.batch_shape(a.shape), a.dtype) for a in (X, y)]
    for t in range(12):
        got = spec.draw(t, X, y, out=outs)
        for a, b in zip(got, next(group)):
            twins.assert_same_array(a, b)
        # every batch but a short one is drawn into out
        assert (got[0] is outs[0]) == (len(got[1]) == outs[1].shape[0])
    assert spec.state_dict(12, X.shape, y.shape) == group.state_dict()
    assert spec.check_state(group.state_dict(), X.shape, y.shape) == 12


def test_epochs_cover_every_row_once():
    data = np.arange(23)
    for end, per in (("wrap", None), ("drop", 23 // 5), ("short", 5)):
        spec = BatchSpec(5, random_seed=3, epochs=True, epoch_end=end)
        if end == "wrap":
            rows = np.concatenate([spec.draw(t, data)[0] for t in range(23)])
            for e in range(5):
                assert sorted(rows[23 * e:23 * (e + 1)]) == list(range(23))
        else:
            for e in range(3):
                rows = np.concatenate([spec.draw(e * per + t, data)[0] for t in range(per)])
                assert len(set(rows.tolist())) == len(rows) == (20 if end == "drop" else 23)
                assert spec.epoch(e * per, data.shape) == e


def test_shards_union_to_the_global_batch(xy):
    X, _ = xy
    for epochs in (False, True):
        whole = BatchSpec(12, random_seed=6, epochs=epochs)
        for world in (2, 3, 4, 6, 12):
            shards = [BatchSpec(12, random_seed=6, epochs=epochs, shard=(r, world))
                      for r in range(world)]
            for t in (0, 5, 2 ** 40):
                parts = [s.draw(t, X)[0] for s in shards]
                twins.assert_same_array(np.concatenate(parts), whole.draw(t, X)[0])
            assert shards[0].batch_shape(X.shape) == (12 // world, 3)
            assert shards[0].total_size(X.shape) == len(X)


def test_state_checks(xy):
    X, y = xy
    spec = BatchSpec(10, random_seed=5, epochs=True, shard=(0, 2))
    core = minibatches(X, y, batch_size=10, random_seed=5, epochs=True, shard=(1, 5))
    core.seek(17)
    assert spec.check_state(core.state_dict(), X.shape, y.shape) == 17   # any shard
    with pytest.raises(ValueError, match="its arrays"):
        spec.check_state(core.state_dict(), X.shape, y[:-1].shape)
    with pytest.raises(ValueError, match="not of 'mbcore.Minibatch'"):
        spec.check_state(core.state_dict(), X.shape)
    with pytest.raises(ValueError, match="its epoch_end"):
        BatchSpec(10, random_seed=5, epochs=True, epoch_end="drop").check_state(
            core.state_dict(), X.shape, y.shape)
    with pytest.raises(ValueError, match="version"):
        spec.check_state(dict(core.state_dict(), version=0), X.shape, y.shape)


def test_mode_errors():
    with pytest.raises(ValueError, match="epoch_end must be 'wrap', 'drop' or 'short'"):
        BatchSpec(4, epochs=True, epoch_end="end")
    with pytest.raises(ValueError, match="needs epochs=True"):
        BatchSpec(4, epoch_end="drop")
    with pytest.raises(ValueError, match="the world size 3 must divide the batch size 4"):
        BatchSpec(4, shard=(0, 3))
    with pytest.raises(ValueError, match=r"batch_size must be <= 3 .*epoch_end='drop'"):
        BatchSpec(4, epochs=True, epoch_end="drop").prepare(np.zeros(3), what="X")
    with pytest.raises(ValueError, match=r"batch_size must be <= 3 .*epoch_end='drop'"):
        BatchSpec(4, epochs=True, epoch_end="drop").draw(0, np.zeros(3))
    # "wrap" lets a batch span epochs
    twins.assert_same_array(BatchSpec(4, epochs=True).draw(2, np.arange(3.0))[0],
                            Minibatch(np.arange(3.0), 4, epochs=True).draw(2))


def test_modes_equality_hash_pickle():
    a = BatchSpec(4, random_seed=1, epochs=True, epoch_end="drop", shard=(1, 2))
    assert a != BatchSpec(4, random_seed=1, epochs=True, shard=(1, 2))
    assert a != BatchSpec(4, random_seed=1, epochs=True, epoch_end="drop", shard=(0, 2))
    assert a != BatchSpec(4, random_seed=1)
    # replace is not used with epochs
    assert BatchSpec(4, epochs=True) == BatchSpec(4, epochs=True, replace=False)
    c = pickle.loads(pickle.dumps(a))
    assert c == a and hash(c) == hash(a) and repr(c) == repr(a)
    assert "epoch_end='drop'" in repr(a) and "shard=(1, 2)" in repr(a)
    data = np.arange(10.0)
    twins.assert_same_array(c.draw(7, data)[0], a.draw(7, data)[0])
