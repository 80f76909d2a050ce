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
