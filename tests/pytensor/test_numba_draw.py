"""The Numba draw: its nopython path (the kernel's draw_gather on the bound
Samplers' plans) and its objmode path give the core's batches step for
step, and each runs where it should."""
import warnings

import numpy as np
import pytensor
import pytest

import twins
from mbcore import minibatches
from mbcore import num_threads
from mbcore.adapters.pytensor import Minibatch, minibatch_step
from mbcore import native
from mbcore.adapters.pytensor import _numba


@pytest.fixture
def objmode_calls(monkeypatch):
    """The number of calls that entered the objmode path (it checks the step
    with _numba.next_step; the nopython path does not)."""
    calls = [0]
    real = _numba.next_step

    def counting(t):
        calls[0] += 1
        return real(t)

    monkeypatch.setattr(_numba, "next_step", counting)
    return calls


@pytest.fixture
def no_nopython(monkeypatch):
    """Every draw through objmode: the record is never usable."""
    monkeypatch.setattr(native, "plans", lambda bound: None)


def compile_numba(outputs):
    # No warning of an object-mode fallback: an error here.
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*object mode.*")
        return pytensor.function([], outputs, mode="NUMBA")


rng = np.random.default_rng(11)
X3 = rng.standard_normal((50, 6, 4)).astype(np.float32)
CASES = [
    pytest.param(np.arange(1000.0), dict(batch_size=128), id="fused"),
    pytest.param(np.arange(1000.0), dict(batch_size=64, replace=False), id="noreplace"),
    pytest.param(np.arange(997.0), dict(batch_size=100, epochs=True), id="epochs-wrap"),
    pytest.param(np.arange(997.0), dict(batch_size=100, epochs=True, epoch_end="drop"),
                 id="epochs-drop"),
    pytest.param(np.arange(1000.0), dict(batch_size=64, shard=(1, 4)), id="shard"),
    pytest.param(X3, dict(batch_size=[7, None, 2]), id="two-axes"),
    pytest.param(X3, dict(batch_size=[None, (3, 5)], replace=False), id="whole-axis-first"),
    pytest.param(np.asfortranarray(X3), dict(batch_size=9), id="fortran"),
    pytest.param(X3[::-2, 1:], dict(batch_size=5), id="negative-strides"),
    pytest.param(np.arange(300, dtype=np.int8), dict(batch_size=17), id="int8"),
    pytest.param(np.zeros((40, 0)), dict(batch_size=8), id="empty-rows"),
]


@pytest.mark.parametrize("data,kw", CASES)
def test_nopython_path_draws_the_cores_batches(data, kw, objmode_calls):
    xb = Minibatch(data, random_seed=5, **kw)
    f = compile_numba(xb)
    core = minibatches(data, random_seed=5, **kw)
    for t in range(6):
        twins.assert_same_array(f(), core.draw(t)[0])
    # The first call binds the data through objmode; the others draw in
    # nopython code.
    assert objmode_calls[0] == 1


@pytest.mark.parametrize("data,kw", CASES)
def test_objmode_path_draws_the_same_batches(data, kw, no_nopython, objmode_calls):
    xb = Minibatch(data, random_seed=5, **kw)
    f = compile_numba(xb)
    core = minibatches(data, random_seed=5, **kw)
    for t in range(6):
        twins.assert_same_array(f(), core.draw(t)[0])
    assert objmode_calls[0] == 6


@pytest.mark.parametrize("path", ["nopython", "objmode"])
def test_two_arrays_aligned(path, xy, objmode_calls, monkeypatch):
    if path == "objmode":
        monkeypatch.setattr(native, "plans", lambda bound: None)
    X, y = xy
    xb, yb = Minibatch(X, y, batch_size=32, random_seed=2, replace=False)
    f = compile_numba([xb, yb])
    core = minibatches(X, y, batch_size=32, random_seed=2, replace=False)
    for t in range(5):
        a, b = f()
        r = core.draw(t)
        twins.assert_same_array(a, r[0])
        twins.assert_same_array(b, r[1])
    assert objmode_calls[0] == (1 if path == "nopython" else 5)


def test_three_arrays_draw_through_objmode(objmode_calls):
    a, b, c = np.arange(100.0), np.arange(100) * 2, np.arange(300.0).reshape(100, 3)
    f = compile_numba(Minibatch(a, b, c, batch_size=8, random_seed=1))
    core = minibatches(a, b, c, batch_size=8, random_seed=1)
    for t in range(3):
        for got, want in zip(f(), core.draw(t)):
            twins.assert_same_array(got, want)
    assert objmode_calls[0] == 3


def test_new_data_rebinds_then_draws_in_nopython(objmode_calls):
    x = pytensor.shared(np.arange(100.0), name="x")
    xb = Minibatch(x, batch_size=10, random_seed=4)
    f = compile_numba(xb)
    f(), f()
    assert objmode_calls[0] == 1
    new = np.arange(5000.0) + 0.5
    x.set_value(new)
    core = minibatches(new, batch_size=10, random_seed=4)
    for t in range(2, 5):
        twins.assert_same_array(f(), core.draw(t)[0])
    assert objmode_calls[0] == 2
    # Another array of the same shape and strides, and a view with other
    # strides, are new data too.
    same_layout = np.arange(5000.0) * 3.0
    x.set_value(same_layout, borrow=True)
    twins.assert_same_array(f(), minibatches(same_layout, batch_size=10, random_seed=4).draw(5)[0])
    assert objmode_calls[0] == 3
    view = new[::-1]
    x.set_value(view, borrow=True)
    twins.assert_same_array(f(), minibatches(view, batch_size=10, random_seed=4).draw(6)[0])
    assert objmode_calls[0] == 4


def test_changes_in_place_are_seen():
    data = np.arange(100.0)
    x = pytensor.shared(data, name="x", borrow=True)
    xb = Minibatch(x, batch_size=10, random_seed=4)
    f = compile_numba(xb)
    f()
    data *= -1.0
    twins.assert_same_array(f(), minibatches(data, batch_size=10, random_seed=4).draw(1)[0])


def test_steps_out_of_range_fall_back_and_raise(objmode_calls):
    xb = Minibatch(np.arange(10.0), batch_size=2)
    f = compile_numba(xb)
    f()
    minibatch_step(xb).set_value(np.int64(-1))
    with pytest.raises(ValueError, match="the minibatch step must be >= 0, got -1"):
        f()
    assert objmode_calls[0] == 2


def test_thread_limit_read_at_each_call():
    # Batches of 2 MB: the kernel may split them over threads; the values
    # are the same for any limit.
    x = np.random.default_rng(0).standard_normal((10**5, 8))
    xb = Minibatch(x, batch_size=2**15, random_seed=9)
    f = compile_numba(xb)
    core = minibatches(x, batch_size=2**15, random_seed=9)
    for t, n in enumerate([1, 2, 1, 2]):
        with num_threads(n):
            twins.assert_same_array(f(), core.draw(t)[0])


def test_a_new_input_layout_after_binding_compiles_again():
    # Numba compiles the draw again for a new layout (here a negative-stride
    # view) while the first layout's data are bound: the objmode call must
    # not try to serialise the bound Samplers.
    x = pytensor.shared(np.arange(100.0))
    f = compile_numba(Minibatch(x, batch_size=10, random_seed=4))
    f()
    view = np.arange(100.0)[::-1]
    x.set_value(view, borrow=True)
    twins.assert_same_array(f(), minibatches(view, batch_size=10, random_seed=4).draw(1)[0])
