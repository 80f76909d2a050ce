"""MinibatchOp as a Theano Op (make_node, infer_shape, grad), the variable's
data handling (set_value, copies, broadcastable, in_memory_size), pickling,
bad input, and the generator variable."""
import pickle

import numpy as np
import pytest

from mbcore.adapters.theano import (GeneratorExhausted, Minibatch, MinibatchIndices,  # first
                                    MinibatchOp, generator, minibatches)
import mbcore
from mbcore import BatchSpec
import theano
import theano.tensor as tt


def assert_same(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)


def op_for(batch_size, seed=42, replace=True, broadcastable=None):
    return MinibatchOp(BatchSpec(batch_size, seed, replace), broadcastable)


# ------------------------------------------------------------------ make_node

def test_make_node_type_errors():
    op = op_for(4)
    state = tt.lscalar()
    with pytest.raises(TypeError, match="int64 scalar"):
        op(tt.dscalar(), tt.dmatrix())
    with pytest.raises(TypeError, match="int64 scalar"):
        op(tt.lvector(), tt.dmatrix())
    with pytest.raises(TypeError, match="int64 scalar"):
        op(tt.iscalar(), tt.dmatrix())
    with pytest.raises(TypeError, match=r"at least ndim=2 for batch_size=\[4, 3\]"):
        op_for([4, 3])(state, tt.dvector())
    with pytest.raises(TypeError, match="one or more data inputs, got none"):
        op(state)
    with pytest.raises(TypeError, match=r"2 data input\(s\) \(one per broadcastable"):
        op_for(4, broadcastable=[(False, False), (False,)])(state, tt.dmatrix())
    with pytest.raises(TypeError, match=r"must have ndim=1 \(its broadcastable pattern"):
        op_for(4, broadcastable=[(False,)])(state, tt.dmatrix())
    with pytest.raises(TypeError):
        op(state, "not a tensor")
    with pytest.raises(TypeError, match="not broadcastable"):
        op_for(4, broadcastable=[(False, True)])(state, tt.dmatrix())


def test_op_constructor_errors():
    with pytest.raises(TypeError, match=r"spec must be a mbcore.BatchSpec, got tuple \(4, None\)"):
        MinibatchOp((4, None))
    with pytest.raises(ValueError, match="cannot be broadcastable"):
        op_for(3, broadcastable=[(True,)])
    with pytest.raises(ValueError, match="epoch_end='short' is not available"):
        MinibatchOp(BatchSpec(3, epochs=True, epoch_end="short"))
    with pytest.raises(TypeError, match="spec must be a mbcore.BatchSpec, got int 3"):
        MinibatchIndices(3)


def test_props_equality_and_hash():
    a, b = op_for([4, None]), op_for([4, None])
    assert a == b and hash(a) == hash(b)
    assert a != op_for([4, None], seed=1)
    assert a != op_for([5, None])
    assert a != op_for([4, None], replace=False)
    assert a != op_for([4, None], broadcastable=[(False, False)])
    assert str(a) == "MinibatchOp{batch_size=[4, None]}"
    assert str(op_for(4, replace=False)) == "MinibatchOp{batch_size=4, replace=False}"


def test_op_applied_to_symbolic_inputs():
    op = op_for(3, seed=5)
    state, X, y = tt.lscalar("s"), tt.dmatrix("X"), tt.dvector("y")
    new, xb, yb = op(state, X, y)
    f = theano.function([state, X, y], [new, xb, yb])
    Xv = np.arange(20.0).reshape(10, 2)
    yv = np.arange(10.0)
    s1, bx, by = f(np.int64(7), Xv, yv)
    assert int(s1) == 8
    cx, cy = mbcore.minibatches(Xv, yv, batch_size=3, random_seed=5).draw(7)
    assert_same(bx, cx)
    assert_same(by, cy)


def test_broadcastable_pattern():
    data = np.random.default_rng(0).random((30, 1))
    x = Minibatch(data, batch_size=4, broadcastable=(False, True))
    assert x.broadcastable == (False, True)
    assert (x + np.ones((4, 3))).eval().shape == (4, 3)
    one = Minibatch(data[:, 0], batch_size=1, broadcastable=(True,))
    assert one.broadcastable == (True,) and one.eval().shape == (1,)
    with pytest.raises(ValueError, match="broadcastable"):
        Minibatch(data, batch_size=4, broadcastable=(True, False))
    with pytest.raises(ValueError, match="broadcastable"):
        Minibatch(np.zeros((30, 2)), batch_size=4, broadcastable=(False, True))
    with pytest.raises(ValueError, match="2 entries"):
        Minibatch(data, batch_size=4, broadcastable=(False,))


# ------------------------------------------------------------------ infer_shape

def test_infer_shape_needs_no_draw(moredata):
    x = Minibatch(moredata, [2, None, 20, Ellipsis, 10])
    # Without the state update, the shape graph does not draw at all.
    f = theano.function([], x.shape, no_default_updates=True)
    assert tuple(f()) == (2, 20, 20, 40, 10)
    assert not any(isinstance(n.op, MinibatchOp) for n in f.maker.fgraph.toposort())
    # With it, the function contains the variable, so the stream advances.
    g = theano.function([], x.shape)
    assert tuple(g()) == (2, 20, 20, 40, 10)
    assert int(x.rng_state.get_value()) == 1


def test_infer_shape_reads_data_shape_at_run_time():
    x = Minibatch(np.zeros((50, 3)), batch_size=[5, None])
    f = theano.function([], x.shape)
    assert tuple(f()) == (5, 3)
    x.shared.set_value(np.zeros((80, 4)))
    assert tuple(f()) == (5, 4)


# ------------------------------------------------------------------ gradient

def test_grad_is_a_scatter_add():
    W = theano.shared(np.arange(12.0).reshape(6, 2))
    op = op_for(8, seed=3)
    state = theano.shared(np.int64(4))
    new, batch = op(state, W)
    c = np.random.default_rng(1).standard_normal((8, 2))
    cost = (batch * c).sum()
    g = theano.function([], tt.grad(cost, W))()
    idx = mbcore.Minibatch(W.get_value(), 8, random_seed=3).indices(4)[0]
    expected = np.zeros((6, 2))
    np.add.at(expected, idx, c)
    np.testing.assert_allclose(g, expected)
    assert len(set(idx.tolist())) < 8   # duplicates were accumulated


def test_grad_multi_axis_scatter_add():
    W = theano.shared(np.random.default_rng(2).random((5, 4, 3)))
    op = op_for([6, 3], seed=8)
    state = theano.shared(np.int64(1))
    _, batch = op(state, W)
    c = np.random.default_rng(3).standard_normal((6, 3, 3))
    g = theano.function([], tt.grad((batch * c).sum(), W))()
    i0, i1, _ = mbcore.Minibatch(W.get_value(), [6, 3], random_seed=8).indices(1)
    expected = np.zeros(W.get_value().shape)
    np.add.at(expected, np.ix_(i0, i1), c)
    np.testing.assert_allclose(g, expected)


def test_grad_through_minibatch_of_a_differentiable_expression():
    """A Minibatch over an expression of a parameter: fit the parameter by
    gradient steps on minibatches (the gradient reaches W)."""
    W = theano.shared(np.zeros((40, 2)))
    target = np.random.default_rng(4).standard_normal((40, 2))
    op = op_for(10, seed=1)
    state = theano.shared(np.int64(0))
    new, batch_w = op(state, W * 1.0)
    _, batch_t = op(state, theano.shared(target))
    state.default_update = new
    cost = ((batch_w - batch_t) ** 2).sum()
    step = theano.function([], cost, updates=[(W, W - 0.2 * tt.grad(cost, W))])
    first = step()
    for _ in range(200):
        last = step()
    assert last < first * 1e-3
    np.testing.assert_allclose(W.get_value(), target, atol=1e-2)


def test_grad_undefined_for_state():
    op = op_for(4)
    state = tt.lscalar()
    x = tt.dvector()
    _, batch = op(state, x)
    with pytest.raises(theano.gradient.NullTypeGradError):
        tt.grad(batch.sum(), state)
    # A gradient that does not need the state's is fine.
    g = theano.function([state, x], tt.grad(batch.sum(), x))(np.int64(0), np.zeros(3))
    assert g.sum() == 4


def test_minibatch_indices_op():
    idx = MinibatchIndices(BatchSpec([3, None, 2], random_seed=1))(
        theano.shared(np.int64(5)), theano.shared(np.zeros((10, 4, 6))))
    got = theano.function([], idx)()
    expected = mbcore.Minibatch(np.zeros((10, 4, 6)), [3, None, 2], random_seed=1).indices(5)
    assert_same(got[0], expected[0])
    assert_same(got[1], expected[2])


# ------------------------------------------------------------------ data

def test_data_is_not_copied_without_cast():
    data = np.random.default_rng(0).random((30, 4))
    with theano.config.change_flags(floatX="float64"):
        x = Minibatch(data, batch_size=3)
    assert x.shared.get_value(borrow=True) is data
    ints = np.arange(30, dtype=np.int32)
    assert Minibatch(ints, batch_size=3).shared.get_value(borrow=True) is ints
    fortran = np.asfortranarray(data)
    with theano.config.change_flags(floatX="float64"):
        xf = Minibatch(fortran, batch_size=3, random_seed=2)
    assert xf.shared.get_value(borrow=True) is fortran
    assert_same(xf.eval(), mbcore.Minibatch(data, 3, random_seed=2).draw(0))
    with theano.config.change_flags(floatX="float32"):
        x32 = Minibatch(data, batch_size=3)
    assert x32.shared.get_value(borrow=True).dtype == np.float32


def test_set_value_resizes_and_keeps_the_stream():
    x = Minibatch(np.arange(10, dtype=np.int64), batch_size=400, random_seed=3)
    f = theano.function([], x)
    assert f().max() <= 9
    x.set_value(np.arange(1000, dtype=np.int64))
    got = f()
    assert_same(got, mbcore.Minibatch(np.arange(1000), 400, random_seed=3).draw(1))
    assert got.max() > 900   # the indices cover the new range
    x.shared.set_value(np.arange(5, dtype=np.int64))
    got = f()
    assert got.max() <= 4 and set(got.tolist()) == set(range(5))


def test_set_value_checks_like_the_core():
    x = Minibatch(np.zeros((10, 3)), batch_size=4)
    with pytest.raises(TypeError, match="casts to"):
        x.set_value(np.zeros((10, 3), dtype=np.complex128))
    with pytest.raises(ValueError, match="ndim=2"):
        x.set_value(np.zeros(10))
    with pytest.raises(ValueError, match="empty sampled axis"):
        x.set_value(np.zeros((0, 3)))
    assert x.shared.get_value().shape == (10, 3)   # old data kept
    x.set_value(np.ones((10, 3), dtype=np.int32))  # same_kind cast is fine
    assert x.eval().dtype == x.dtype and (x.eval() == 1).all()


def test_update_shared_without_function():
    x = Minibatch(np.zeros((10, 3)), batch_size=4)
    with pytest.raises(ValueError, match="update_shared_f"):
        x.update_shared()
    with pytest.raises(TypeError, match="callable"):
        Minibatch(np.zeros((10, 3)), batch_size=4, update_shared_f=3)


def test_in_memory_size():
    data = np.arange(100.0).reshape(50, 2)
    x = Minibatch(data, batch_size=30, in_memory_size=10, dtype="float64", random_seed=1)
    assert x.shared.get_value().shape == (10, 2)
    assert x.eval().max() < 20
    assert_same(x.eval(), mbcore.Minibatch(data, 30, random_seed=1, in_memory_size=10).draw(1))
    x.set_value(data + 1000)
    assert x.shared.get_value().shape == (10, 2)   # cut as the core does


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(batch_size=0), ValueError, "positive"),
    (dict(batch_size=2.5), TypeError, "must be an int"),
    (dict(batch_size=[2, Ellipsis, Ellipsis]), ValueError, "at most one Ellipsis"),
    (dict(batch_size=[2, 2, 2]), ValueError, "ndim=2"),
    (dict(batch_size=[None, None]), ValueError, "at least one axis"),
    (dict(batch_size=[(2, 3, 4)]), ValueError, "2 items"),
    (dict(random_seed=-1), ValueError, "non-negative"),
    (dict(random_seed="a"), TypeError, "random_seed"),
    (dict(dtype="not-a-dtype"), TypeError, "dtype"),
    (dict(in_memory_size=[1.5]), TypeError, "in_memory_size"),
    (dict(batch_size=20, replace=False), ValueError, "replace=False"),
    (dict(replace="no"), TypeError, "replace must be a bool"),
])
def test_bad_input_raises_the_core_errors(kwargs, exc, match):
    data = np.zeros((10, 3))
    with pytest.raises(exc, match=match):
        Minibatch(data, **kwargs)
    with pytest.raises(exc, match=match):
        mbcore.Minibatch(data, **kwargs)


def test_bad_data():
    with pytest.raises(TypeError, match="Python objects"):
        Minibatch(np.array([object()] * 4), batch_size=2)
    with pytest.raises(ValueError, match="0-d"):
        Minibatch(np.float64(3.0), batch_size=2)
    with pytest.raises(ValueError, match="empty sampled axis"):
        Minibatch(np.zeros((0, 2)), batch_size=2)


def test_negative_state_is_a_clear_error(data2d):
    x = Minibatch(data2d, batch_size=4)
    x.rng_state.set_value(np.int64(-1))
    with pytest.raises(ValueError, match=">= 0"):
        theano.function([], x)()


# ------------------------------------------------------------------ pickling

def test_pickle_variable_and_graph(data2d):
    x = Minibatch(data2d, batch_size=5, random_seed=4, dtype="float64", name="xb")
    theano.function([], x)()
    y, = pickle.loads(pickle.dumps([x]))
    assert isinstance(y, Minibatch) and y.name == "xb"
    assert int(y.rng_state.get_value()) == 1
    assert y.rng_state.default_update is y.owner.outputs[0]
    assert_same(theano.function([], y)(), mbcore.Minibatch(data2d, 5, random_seed=4).draw(1))
    y.set_value(data2d[:50])
    assert y.shared.get_value().shape == (50, 7)


def test_pickle_compiled_function(data2d):
    x, z = minibatches(data2d, data2d[:, 0], batch_size=5, random_seed=4, dtype="float64")
    f = theano.function([], [x, z * 2])
    f()
    g = pickle.loads(pickle.dumps(f))
    core = mbcore.minibatches(data2d, data2d[:, 0], batch_size=5, random_seed=4)
    for t in (1, 2):
        bx, bz = g()
        cx, cz = core.draw(t)
        assert_same(bx, cx)
        assert_same(bz, 2 * cz)
    assert_same(f()[0], core.draw(1)[0])   # the original goes on from its own state


# ------------------------------------------------------------------ generator

def test_generator_stream_and_default():
    v = generator((np.full(3, i, dtype=np.float64) for i in range(3)), name="g")
    assert v.dtype == theano.config.floatX and v.name == "g"
    assert (v.tag.test_value == 0).all()
    f = theano.function([], v * 2)
    assert [float(f()[0]) for _ in range(3)] == [0.0, 2.0, 4.0]
    with pytest.raises(GeneratorExhausted, match="'g' is exhausted"):
        f()
    v.set_default(np.full(3, -1.0))
    assert float(f()[0]) == -2.0
    v.set_gen(np.full(3, 10.0 + i) for i in range(2))
    assert [float(f()[0]) for _ in range(3)] == [20.0, 22.0, -2.0]
    v.set_default(None)
    with pytest.raises(StopIteration):
        f()


def test_generator_type_checks():
    v = generator(np.zeros((2, 2), dtype=np.int32) for _ in range(5))
    with pytest.raises(ValueError, match="ndim"):
        v.set_gen(np.zeros(3, dtype=np.int32) for _ in range(2))
    with pytest.raises(ValueError, match="ndim"):
        v.set_default(np.zeros(3))
    w = generator(iter([np.zeros(2), np.zeros((2, 2))]), name="w")
    f = theano.function([], w + 0)
    f()
    with pytest.raises(ValueError, match="the generator of variable 'w': item 1 of the "
                                         "generator has ndim=2"):
        f()
    with pytest.raises(ValueError, match="at least one item"):
        generator(iter([]))


def test_generator_items_are_copied():
    buf = np.zeros(3)

    def gen():
        for i in range(3):
            buf[:] = i
            yield buf
    v = generator(gen())
    f = theano.function([], v)
    a = f()
    b = f()
    assert a[0] == 0 and b[0] == 1 and a is not buf


def test_generator_variables_never_merge_or_fold():
    a = generator(np.full(1, i) for i in range(10))
    b = generator(np.full(1, i) for i in range(10))
    f = theano.function([], [a + 0, b + 0])
    assert [x[0] for x in f()] == [0, 0]
    assert [x[0] for x in f()] == [1, 1]


def test_docstring_examples_run():
    import doctest
    import importlib
    import pkgutil

    import mbcore.adapters.theano as package
    attempted = 0
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        result = doctest.testmod(importlib.import_module(info.name))
        assert result.failed == 0, info.name
        attempted += result.attempted
    assert attempted >= 10
