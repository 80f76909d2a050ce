"""The PyTensor Op: batches equal the core's step for step, state as an explicit
input and output, on the C and Numba backends, with compiled functions."""
import warnings

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import twins
from mbcore import Minibatch as CoreMinibatch
from mbcore import minibatches
from mbcore.adapters.pytensor import Minibatch, MinibatchDraw, minibatch_step, total_size

# The C thunk (PyTensor's default linker), the Python thunk (linker="py"),
# and Numba.
MODES = [pytest.param("FAST_RUN", id="c"),
         pytest.param(pytensor.compile.mode.Mode(linker="py", optimizer="fast_run"), id="py"),
         pytest.param("NUMBA", id="numba")]


def compile_fn(outputs, mode, **kwargs):
    # Numba must not fall back to object mode with a warning: an error here.
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*object mode.*")
        return pytensor.function([], outputs, mode=mode, **kwargs)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("batch_size,replace", [
    (7, True), (7, False), ([5, None], True), ([(4, 9), ...], False), ([3, 2], True),
    ([None, 2], False)], ids=repr)
def test_batches_equal_the_core_step_for_step(mode, batch_size, replace):
    data = np.arange(40 * 6 * 3, dtype=np.float32).reshape(40, 6, 3)
    xb = Minibatch(data, batch_size=batch_size, random_seed=7, replace=replace)
    f = compile_fn(xb, mode)
    core = CoreMinibatch(data, batch_size, random_seed=7, replace=replace)
    for t in range(4):
        got = f()
        twins.assert_same_array(got, next(core))
    assert minibatch_step(xb).get_value() == 4


@pytest.mark.parametrize("mode", MODES)
def test_aligned_by_one_draw_like_minibatches(mode, xy):
    X, y = xy
    xb, yb = Minibatch(X, y, batch_size=16, random_seed=3)
    f = compile_fn([xb, yb], mode)
    ref = minibatches(X, y, batch_size=16, random_seed=3)
    for t in range(5):
        a, b = f()
        r = next(ref)
        twins.assert_same_array(a, r[0])
        twins.assert_same_array(b, r[1])


@pytest.mark.parametrize("mode", MODES)
def test_step_out_of_range(mode):
    xb = Minibatch(np.arange(10.0), batch_size=2)
    f = compile_fn(xb, mode)
    step = minibatch_step(xb)
    step.set_value(np.int64(2 ** 63 - 2))
    f()
    with pytest.raises(OverflowError, match="the minibatch step is 9223372036854775807"):
        f()
    step.set_value(np.int64(-1))
    with pytest.raises(ValueError, match="the minibatch step must be >= 0, got -1"):
        f()


def test_default_backend_runs_c_code():
    f = pytensor.function([], Minibatch(np.arange(10.0), batch_size=2))
    if not pytensor.config.cxx:
        pytest.skip("no C compiler configured for PyTensor")
    assert all(hasattr(t, "cthunk") for t in f.vm.thunks)


def test_one_variable_returns_a_variable_several_a_list(xy):
    X, y = xy
    assert isinstance(Minibatch(X, batch_size=4), pt.TensorVariable)
    out = Minibatch(X, y, batch_size=4)
    assert isinstance(out, list) and len(out) == 2
    assert [v.name for v in out] == ["minibatch.0", "minibatch.1"]
    assert out[0].type.shape == (4, 2) and out[1].type.shape == (4,)


@pytest.mark.parametrize("mode", MODES)
def test_plain_function_advances_and_functions_share_the_stream(mode):
    x = np.arange(1000.0)
    xb = Minibatch(x, batch_size=8, random_seed=1)
    f = compile_fn(xb, mode)
    g = compile_fn(xb.sum(), mode)
    core = CoreMinibatch(x, 8, random_seed=1)
    twins.assert_same_array(f(), core.draw(0))
    assert g() == core.draw(1).sum()          # g continues f's stream
    twins.assert_same_array(f(), core.draw(2))
    step = minibatch_step(xb)
    assert step.get_value() == 3
    step.set_value(np.int64(10))              # seek
    twins.assert_same_array(f(), core.draw(10))


@pytest.mark.parametrize("mode", MODES)
def test_rewrites_never_merge_two_streams(mode):
    x = np.arange(1000.0)
    a = Minibatch(x, batch_size=8, random_seed=1)
    b = Minibatch(x, batch_size=8, random_seed=1)    # same spec: same batches, own step
    c = Minibatch(x, batch_size=8, random_seed=2)
    f = compile_fn([a, b, c, a + b], mode)
    draws = [node for node in f.maker.fgraph.apply_nodes if isinstance(node.op, MinibatchDraw)]
    assert len(draws) == 3
    for t in range(3):
        ra, rb, rc, rs = f()
        twins.assert_same_array(ra, rb)
        assert not np.array_equal(ra, rc)
        np.testing.assert_array_equal(rs, 2 * ra)
    assert [minibatch_step(v).get_value() for v in (a, b, c)] == [3, 3, 3]
    # Advancing one leaves the other where it is.
    g = compile_fn(a, mode)
    g()
    assert minibatch_step(a).get_value() == 4 and minibatch_step(b).get_value() == 3


def test_no_default_updates_freezes_by_choice():
    x = np.arange(100.0)
    xb = Minibatch(x, batch_size=4)
    f = pytensor.function([], xb, no_default_updates=True)
    twins.assert_same_array(f(), f())
    assert minibatch_step(xb).get_value() == 0


@pytest.mark.parametrize("mode", MODES)
def test_returned_batches_are_never_overwritten(mode):
    x = np.arange(10000.0)
    xb = Minibatch(x, batch_size=64, random_seed=5)
    f = compile_fn(xb, mode)
    kept = [f() for _ in range(4)]
    core = CoreMinibatch(x, 64, random_seed=5)
    for t, k in enumerate(kept):
        twins.assert_same_array(k, core.draw(t))
    # An intermediate batch (reused between calls inside the function) still
    # gives the right values.
    g = compile_fn((xb * 2.0).sum(), mode)
    for t in range(4, 8):
        assert g() == pytest.approx(2 * core.draw(t).sum())


@pytest.mark.parametrize("mode", MODES)
def test_shared_data_set_value_with_a_new_length(mode):
    x = pytensor.shared(np.arange(100.0), name="x")
    xb = Minibatch(x, batch_size=10, random_seed=4)
    f = compile_fn(xb, mode)
    f()
    new = np.arange(5000.0) + 0.5
    x.set_value(new)
    got = f()
    twins.assert_same_array(got, CoreMinibatch(new, 10, random_seed=4).draw(1))
    assert got.max() > 100


def test_symbolic_data_graph():
    x = pt.vector("x")
    xb = Minibatch(x * 2.0, batch_size=5, random_seed=9)
    f = pytensor.function([x], xb)
    v = np.arange(50.0)
    twins.assert_same_array(f(v), CoreMinibatch(v * 2.0, 5, random_seed=9).draw(0))


def test_total_size_helper(xy):
    X, y = xy
    xb, yb = Minibatch(X, y, batch_size=8)
    assert total_size(xb) == 2000 and total_size(yb) == 2000
    d = np.zeros((30, 4, 5))
    assert total_size(Minibatch(d, batch_size=[3, None, 2])) == [30, None, 5]


# ------------------------------------------------------------------ errors

def test_random_variables_as_data_are_rejected():
    import pymc as pm

    with pytest.raises(ValueError, match="is not valid for Minibatch, only non-random"):
        Minibatch(pm.Normal.dist(size=(10,)), batch_size=2)


def test_unequal_lengths_are_rejected_naming_the_variables():
    X = pytensor.shared(np.zeros((10, 2)), name="X")
    with pytest.raises(ValueError, match=r"same length along sampled axis 0, got X: 10, "
                                         r"variable 1: 9"):
        Minibatch(X, np.zeros(9), batch_size=2)


@pytest.mark.parametrize("mode", MODES)
def test_unequal_lengths_at_run_time(mode):
    X = pytensor.shared(np.zeros((10, 2)))
    y = pytensor.shared(np.zeros(10))
    xb, yb = Minibatch(X, y, batch_size=2)
    f = compile_fn([xb, yb], mode)
    f()
    y.set_value(np.zeros(9))
    with pytest.raises(ValueError, match=r"same length along sampled axis 0, got "
                                         r"arrays\[0\]: 10, arrays\[1\]: 9"):
        f()


def test_batch_larger_than_the_axis_without_replacement():
    with pytest.raises(ValueError, match=r"batch_size must be <= 10 \(the length of axis 0 "
                                         r"of x\) when replace=False, got 11"):
        Minibatch(pytensor.shared(np.zeros(10), name="x"), batch_size=11, replace=False)
    Minibatch(np.zeros(10), batch_size=11)     # with replacement: fine


def test_bad_arguments():
    with pytest.raises(TypeError, match="batch_size must be an int"):
        Minibatch(np.zeros(10), batch_size=2.0)
    with pytest.raises(ValueError, match="must have at least ndim=2"):
        Minibatch(np.zeros(10), batch_size=[2, 2])
    with pytest.raises(TypeError, match="replace must be a bool"):
        Minibatch(np.zeros(10), batch_size=2, replace="no")
    with pytest.raises(ValueError, match="has an empty sampled axis 0"):
        Minibatch(np.zeros((0, 3)), batch_size=2)


def test_perform_draws_into_fitting_outputs_only():
    """PyTensor's reference implementation (``perform``): reuses an output
    storage that fits, allocates when the data changed length on a whole
    axis."""
    X = pytensor.shared(np.arange(40.0).reshape(10, 4))
    xb = Minibatch(X, batch_size=3, random_seed=2)
    node = [n for n in pytensor.function([], xb).maker.fgraph.apply_nodes
            if isinstance(n.op, MinibatchDraw)][0]
    storage = [[None], [None]]
    node.op.perform(node, [X.get_value(), np.array(0, np.int64)], storage)
    first = storage[0][0]
    twins.assert_same_array(first, CoreMinibatch(X.get_value(), 3, random_seed=2).draw(0))
    node.op.perform(node, [X.get_value(), np.array(1, np.int64)], storage)
    assert storage[0][0] is first and storage[1][0] == 2
    wider = np.arange(60.0).reshape(10, 6)
    node.op.perform(node, [wider, np.array(1, np.int64)], storage)
    twins.assert_same_array(storage[0][0], CoreMinibatch(wider, 3, random_seed=2).draw(1))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("batch_size", [6, [4, 1], [(3, 1), None], [4, 3]], ids=repr)
def test_gradient_with_respect_to_the_data(mode, batch_size):
    """The output gradient is added back where batch t came from, repeats
    summed: what pm.Minibatch's advanced indexing gives."""
    X0 = np.arange(30.0).reshape(10, 3)
    X = pytensor.shared(X0)
    xb = Minibatch(X * 1.0, batch_size=batch_size, random_seed=3)
    w = pytensor.shared(np.float64(1.5))
    g, gw = pytensor.grad((w * xb ** 2).sum(), [X, w])
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*object mode.*")
        f = pytensor.function([], [xb, g, gw], mode=mode)
    spec_idx = [mbcore_indices(batch_size, t, X0.shape) for t in range(2)]
    for t in range(2):
        batch, got, got_w = f()
        ix = np.ix_(*spec_idx[t])
        twins.assert_same_array(batch, X0[ix])
        expect = np.zeros_like(X0)
        np.add.at(expect, ix, 2 * 1.5 * X0[ix])
        np.testing.assert_allclose(got, expect)
        assert got_w == pytest.approx((X0[ix] ** 2).sum())


def mbcore_indices(batch_size, t, shape):
    from mbcore import BatchSpec

    idx = BatchSpec(batch_size, random_seed=3).indices(t, shape)
    return [np.arange(n) if i is None else i for i, n in zip(idx, shape)]


def test_gradient_refused_when_a_whole_axis_leads():
    X = pytensor.shared(np.zeros((4, 5)))
    xb = Minibatch(X, batch_size=[None, 2])
    with pytest.raises(Exception, match="a whole axis comes before a sampled one"):
        pytensor.grad(xb.sum(), X)


@pytest.mark.parametrize("mode", MODES)
def test_three_variables_aligned(mode):
    a, b, c = np.arange(50.0), np.arange(100.0).reshape(50, 2), np.arange(50, dtype=np.int32)
    ab, bb, cb = Minibatch(a, b, c, batch_size=7, random_seed=6)
    f = compile_fn([ab, bb, cb], mode)
    ref = minibatches(a, b, c, batch_size=7, random_seed=6)
    for t in range(3):
        for got, want in zip(f(), next(ref)):
            twins.assert_same_array(got, want)


def test_pickled_function_continues_its_stream():
    import pickle

    x = np.arange(100.0)
    f = pytensor.function([], Minibatch(x, batch_size=5, random_seed=3))
    f(), f()
    g = pickle.loads(pickle.dumps(f))
    core = CoreMinibatch(x, 5, random_seed=3)
    twins.assert_same_array(g(), core.draw(2))     # the copy carries step 2
    twins.assert_same_array(f(), core.draw(2))     # and the original is untouched


@pytest.mark.parametrize("mode", MODES)
def test_no_memory_growth(mode):
    """2000 calls drawing 88 KB each (176 MB if a batch leaked), as outputs
    and as intermediates: the resident size does not grow."""
    import os

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    if not os.path.exists("/proc/self/statm"):
        pytest.skip("needs /proc/self/statm (Linux)")
    x = np.random.default_rng(0).standard_normal((10**5, 10))
    y = np.arange(1e5)
    xb, yb = Minibatch(x, y, batch_size=1000)
    f = compile_fn([xb, yb], mode)
    g = compile_fn((xb.sum(1) * yb).sum(), mode)
    for _ in range(100):
        f(), g()
    before = rss_mb()
    for _ in range(1000):
        f(), g()
    grown_mb = rss_mb() - before
    assert grown_mb < 32, grown_mb
