"""The stream of a Theano Minibatch: equal to the core's, advancing, freezable,
aligned, and safe from graph rewrites."""
import numpy as np
import pytest

from mbcore.adapters.theano import (Minibatch, MinibatchOp, align_minibatches,  # first
                                    minibatches)
import mbcore
import theano
import theano.tensor as tt


# The Op has a C thunk (the default wherever Theano has a compiler) and a
# Python thunk (linker "py", or no compiler); both are tested.
IMPLS = {"c": None, "py": theano.compile.mode.Mode(linker="py", optimizer="fast_run")}


@pytest.fixture(params=sorted(IMPLS))
def compile_fn(request):
    mode = IMPLS[request.param]

    def compile_fn(outputs, **kwargs):
        f = theano.function([], outputs, mode=mode, **kwargs)
        thunks = [t for t, n in zip(f.fn.thunks, f.fn.nodes) if isinstance(n.op, MinibatchOp)] \
            if hasattr(f.fn, "thunks") else []
        if request.param == "c":
            assert thunks and all(hasattr(t, "cthunk") for t in thunks)
        return f
    return compile_fn


def core_batches(data, batch_size, k, random_seed=42, dtype=None, replace=True):
    core = mbcore.Minibatch(data, batch_size, dtype=dtype, random_seed=random_seed,
                            replace=replace)
    return [core.draw(t) for t in range(k)]


def assert_same(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("spec", [10, [3, 4], [(5, 7), None, 2], [2, Ellipsis, 3],
                                  [Ellipsis, 2]],
                         ids=["int", "two-axes", "own-seed", "ellipsis", "last-axis"])
@pytest.mark.parametrize("seed", [0, 42, 2**40 + 3])
def test_equals_core_step_by_step(spec, seed, compile_fn):
    data = np.random.default_rng(1).standard_normal((20, 6, 5))
    x = Minibatch(data, batch_size=spec, random_seed=seed, dtype="float64")
    f = compile_fn(x)
    for t, expected in enumerate(core_batches(data, spec, 6, seed)):
        assert_same(f(), expected)
    assert int(x.rng_state.get_value()) == 6


@pytest.mark.parametrize("floatx", ["float64", "float32"])
def test_floatx_cast_equals_core_on_cast_data(floatx):
    data = np.random.default_rng(2).standard_normal((50, 3))
    with theano.config.change_flags(floatX=floatx):
        x = Minibatch(data, batch_size=8, random_seed=5)
        assert x.dtype == floatx
        f = theano.function([], x)
        for expected in core_batches(data.astype(floatx), 8, 4, 5):
            assert_same(f(), expected)


def test_replace_false_equals_core(compile_fn):
    data = np.arange(40.0).reshape(20, 2)
    x = Minibatch(data, batch_size=20, random_seed=3, replace=False, dtype="float64")
    f = compile_fn(x)
    for expected in core_batches(data, 20, 3, 3, replace=False):
        got = f()
        assert_same(got, expected)
        assert sorted(got[:, 0]) == sorted(data[:, 0])   # a permutation


def test_test_value_is_the_first_batch(data2d):
    x = Minibatch(data2d, batch_size=6, random_seed=9, dtype="float64")
    assert_same(x.tag.test_value, core_batches(data2d, 6, 1, 9)[0])
    with theano.config.change_flags(compute_test_value="raise"):
        y = Minibatch(data2d, batch_size=6, random_seed=9, dtype="float64")
        z = (y ** 2).sum(axis=1)
        np.testing.assert_allclose(z.tag.test_value, (x.tag.test_value ** 2).sum(axis=1))


def test_every_call_of_every_function_advances(data2d):
    x = Minibatch(data2d, batch_size=5, random_seed=1, dtype="float64")
    expected = core_batches(data2d, 5, 6, 1)
    f = theano.function([], x)
    g = theano.function([], [x.sum(), x * 2])
    assert_same(f(), expected[0])
    s, twice = g()
    assert_same(twice, 2 * expected[1])
    assert np.isclose(s, expected[1].sum())
    assert_same(x.eval(), expected[2])
    assert_same(f(), expected[3])
    # Consecutive batches differ (5 of 100 rows: equal by chance ~1e-10).
    assert not np.array_equal(expected[0], expected[1])


def test_no_default_updates_freezes(data2d, compile_fn):
    x = Minibatch(data2d, batch_size=5, random_seed=1, dtype="float64")
    frozen = compile_fn(x, no_default_updates=True)
    first = frozen()
    for _ in range(3):
        assert_same(frozen(), first)
    assert int(x.rng_state.get_value()) == 0
    frozen_too = theano.function([], x, no_default_updates=[x.rng_state])
    assert_same(frozen_too(), first)
    assert_same(theano.function([], x)(), first)   # the stream then goes on
    assert int(x.rng_state.get_value()) == 1


def test_same_seed_and_spec_align(regression):
    X, y = regression["X"], regression["y"]
    xb = Minibatch(X, batch_size=64, random_seed=11)
    yb = Minibatch(y, batch_size=64, random_seed=11)
    f = theano.function([], [xb, yb])
    for _ in range(5):
        bx, by = f()
        rows = np.searchsorted(np.sort(y), by)
        order = np.argsort(y)
        # Every y in the batch sits on the same row as the X next to it.
        np.testing.assert_array_equal(bx, X[order[rows]].astype(bx.dtype))


# 12000 rows of X (288 KB in float64) take the kernel's two-thread path.
@pytest.mark.parametrize("batch", [32, 12000])
def test_minibatches_one_op_one_state(regression, compile_fn, batch):
    X, y = regression["X"], regression["y"]
    xb, yb = minibatches(X, y, batch_size=batch, random_seed=4)
    assert xb.owner is yb.owner and isinstance(xb.owner.op, MinibatchOp)
    assert xb.rng_state is yb.rng_state
    f = compile_fn([xb, yb])
    Xc, yc = X.astype(xb.dtype), y.astype(yb.dtype)
    core = mbcore.minibatches(Xc, yc, batch_size=batch, random_seed=4)
    for t in range(4):
        bx, by = f()
        cx, cy = core.draw(t)
        assert_same(bx, cx)
        assert_same(by, cy)
        # and each is the batch a lone Minibatch of that array draws
        assert_same(by, mbcore.Minibatch(yc, batch, random_seed=4).draw(t))
    # A function of one of them advances both (one state).
    theano.function([], xb)()
    assert int(yb.rng_state.get_value()) == 5


def test_minibatches_length_mismatch_is_the_core_error(compile_fn):
    with pytest.raises(ValueError, match="sampled axis 0"):
        minibatches(np.zeros((10, 2)), np.zeros(9), batch_size=3)
    xb, yb = minibatches(np.zeros((10, 2)), np.zeros(10), batch_size=3)
    f = compile_fn([xb, yb])
    yb.shared.set_value(np.zeros(12))
    with pytest.raises(ValueError, match=r"same length along sampled axis 0, got "
                                         r"arrays\[0\]: 10, arrays\[1\]: 12"):
        f()


def test_align_minibatches(data2d):
    a = Minibatch(data2d, batch_size=4, random_seed=2)
    b = Minibatch(data2d, batch_size=4, random_seed=2)
    theano.function([], a)()
    theano.function([], a)()
    fa, fb = theano.function([], a), theano.function([], b)
    assert not np.array_equal(fa(), fb())
    align_minibatches([a, b])
    assert_same(fa(), fb())
    theano.function([], a)()
    align_minibatches()
    assert int(a.rng_state.get_value()) == 0 and int(b.rng_state.get_value()) == 0
    with pytest.raises(TypeError, match="Minibatch variables"):
        align_minibatches([a.shared])


def test_two_streams_never_merge(data2d):
    """Equal specs with different seeds, or different states, stay apart
    after Theano's merge optimisation; equal seeds give equal batches."""
    a = Minibatch(data2d, batch_size=4, random_seed=1)
    b = Minibatch(data2d, batch_size=4, random_seed=2)
    c = Minibatch(data2d, batch_size=4, random_seed=1)
    f = theano.function([], [a, b, c])
    nodes = [n for n in f.maker.fgraph.toposort() if isinstance(n.op, MinibatchOp)]
    assert len(nodes) == 3
    for _ in range(3):
        ba, bb, bc = f()
        assert not np.array_equal(ba, bb)
        assert_same(ba, bc)


def test_constant_data_is_not_folded_into_one_batch(data2d):
    """With the data a constant, the batch still depends on the state (a
    shared variable), so constant folding cannot freeze the stream."""
    x = Minibatch(data2d, batch_size=4, random_seed=6, dtype="float64")
    y = theano.clone(x * 1.0, {x.shared: tt.constant(data2d)})
    f = theano.function([], y)
    expected = core_batches(data2d, 4, 3, 6)
    for e in expected:
        assert_same(f(), e)


def test_constant_state_folds_to_that_batch(data2d):
    """Folding is correct: with a constant state the batch is a constant."""
    x = Minibatch(data2d, batch_size=4, random_seed=6, dtype="float64")
    y = theano.clone(x, {x.rng_state: tt.constant(np.int64(2))})
    f = theano.function([], y)
    expected = core_batches(data2d, 4, 3, 6)[2]
    assert_same(f(), expected)
    assert_same(f(), expected)


def test_output_storage_is_not_shared_with_the_caller(data2d, compile_fn):
    x = Minibatch(data2d, batch_size=5, random_seed=8, dtype="float64")
    f = compile_fn(x)
    first = f()
    kept = first.copy()
    second = f()
    assert second is not first
    assert_same(first, kept)


def test_float32_covers_high_rows():
    """floatX=float32 cannot represent odd integers above 2**24 (a float32
    uniform times n, as the reference graph draws, never hits those rows);
    the kernels draw integers, so every row is reachable."""
    n = 2**24 + 2**21
    data = np.arange(n, dtype=np.int32)
    with theano.config.change_flags(floatX="float32"):
        x = Minibatch(data, batch_size=100_000, random_seed=7)
        assert x.dtype == "int32"
        f = theano.function([], x)
        got = np.concatenate([f() for _ in range(3)])
    high = got[got >= 2**24]
    # ~3e5 * 2**21 / n = 33000 draws above 2**24, half of them odd.
    assert len(high) > 25_000
    assert (high % 2 == 1).mean() > 0.45
    assert got.max() >= n - 200
    assert_same(got[:100_000], mbcore.Minibatch(data, 100_000, random_seed=7).draw(0))


def test_int64_state_type_is_shared_scalar(data2d):
    x = Minibatch(data2d, batch_size=4)
    assert x.rng_state.type == tt.TensorType("int64", ())
    assert x.rng_state.default_update is x.owner.outputs[0]


def test_set_value_resizes_in_every_thunk(compile_fn):
    """The thunks rebuild their Samplers when the array changes: new rows
    are reachable, removed ones are not."""
    x = Minibatch(np.arange(10, dtype=np.int64), batch_size=400, random_seed=3)
    f = compile_fn(x * 1)
    assert f().max() <= 9
    x.set_value(np.arange(1000, dtype=np.int64))
    got = f()
    assert_same(got, mbcore.Minibatch(np.arange(1000), 400, random_seed=3).draw(1))
    x.shared.set_value(np.arange(5, dtype=np.int64))
    assert set(f().tolist()) == set(range(5))
    # The same array object, written in place: read as it is now.
    arr = np.arange(7, dtype=np.int64)
    x.shared.set_value(arr, borrow=True)
    assert f().max() <= 6
    arr += 100
    assert f().min() >= 100
    x.shared.set_value(np.zeros(3, dtype=np.int64), borrow=True)
    assert set(f().tolist()) == {0}


def test_an_array_reshaped_in_place_is_bound_again_in_every_thunk(compile_fn):
    """The same array object with another shape (or strides) is drawn from
    as it is now: the thunks compare shapes and strides, not only ids."""
    arr = np.arange(40, dtype=np.int64).reshape(20, 2)
    x = Minibatch(arr, batch_size=3, random_seed=4)
    f = compile_fn(x * 1)
    f()
    arr.shape = (10, 4)
    got = f()
    assert got.shape == (3, 4)
    np.testing.assert_array_equal(got, mbcore.Minibatch(arr, 3, random_seed=4).draw(1))
    arr.strides = (8, 80)        # the same buffer read as its transpose's layout
    np.testing.assert_array_equal(f(), mbcore.Minibatch(arr, 3, random_seed=4).draw(2))


def test_negative_state_is_a_clear_error_in_every_thunk(data2d, compile_fn):
    x = Minibatch(data2d, batch_size=4)
    f = compile_fn(x)
    x.rng_state.set_value(np.int64(-1))
    with pytest.raises(ValueError, match=">= 0"):
        f()


def test_last_state_is_a_clear_error_in_every_thunk(data2d, compile_fn):
    # The state after a batch is step + 1 (int64): 2**63 - 1 cannot draw one.
    x = Minibatch(data2d, batch_size=4, random_seed=3)
    f = compile_fn(x)
    x.rng_state.set_value(np.int64(2 ** 63 - 2))
    f()
    assert int(x.rng_state.get_value()) == 2 ** 63 - 1
    with pytest.raises(OverflowError, match=r"the minibatch step is 9223372036854775807; an "
                                            r"int64 step variable draws no batch from 2\*\*63 - 1"):
        f()
    assert int(x.rng_state.get_value()) == 2 ** 63 - 1


def test_debug_mode_checks_c_against_python(data2d):
    """DebugMode runs the C thunk and perform() and compares them (and checks
    the Op does not change its inputs)."""
    other = np.asfortranarray(data2d * 2)
    x, z = minibatches(data2d, other, batch_size=[5, 3], random_seed=2, dtype="float64")
    f = theano.function([], [x, z], mode="DebugMode")
    core = mbcore.minibatches(data2d, other, batch_size=[5, 3], random_seed=2)
    for t in range(2):
        bx, bz = f()
        cx, cz = core.draw(t)
        assert_same(bx, cx)
        assert_same(bz, cz)
