"""Minibatch over a Source in Theano graphs: a ``.npy`` path, a MemmapSource,
an h5py dataset and a user's Source are held by a ``SourceOp``, and every
compiled function draws the batches of the core ``Minibatch`` /
``minibatches`` over the same source with the same arguments, step for
step, in every mode; a memory-mapped array stays an array (a shared
variable read in place); PyMC3 fits on a source; bad sources are refused
with their argument named."""
import pickle

import numpy as np
import pytest

from mbcore.adapters.theano import Minibatch, SourceOp, minibatches  # first: configures theano
import pymc3 as pm
import theano
import theano.tensor as tt

import mbcore
from mbcore import MemmapSource, as_source

from row_source import RowSource

h5py = pytest.importorskip("h5py")

SHAPE = (203, 3)
MODES = {
    "replace": {},
    "no-replace": {"replace": False},
    "wrap": {"epochs": True},
    "drop": {"epochs": True, "epoch_end": "drop"},
    "shard": {"shard": (1, 4)},
    "drop-shard": {"epochs": True, "epoch_end": "drop", "shard": (3, 4)},
}


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(12).standard_normal(SHAPE)


def _npy(data, tmp_path):
    np.save(tmp_path / "x.npy", data)
    return str(tmp_path / "x.npy")


def _memmap_source(data, tmp_path):
    np.save(tmp_path / "m.npy", data)
    return MemmapSource(np.load(tmp_path / "m.npy", mmap_mode="r"))


def _h5(data, tmp_path):
    f = h5py.File(tmp_path / "x.h5", "w")
    f.create_dataset("x", data=data, chunks=(32, 3))
    return f["x"]


KINDS = {"npy": _npy, "memmap-source": _memmap_source, "h5py": _h5,
         "user": lambda d, p: RowSource(d)}


@pytest.fixture(params=sorted(KINDS))
def source(request, data, tmp_path):
    return KINDS[request.param](data, tmp_path)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_compiled_batches_equal_the_core_over_the_same_source(source, data, mode):
    kw = MODES[mode]
    xb = Minibatch(source, batch_size=32, random_seed=5, **kw)
    assert isinstance(xb.owner.op, SourceOp) and xb.shared is None
    assert xb.dtype == "float64" and xb.total_size == SHAPE[0]
    f = theano.function([], xb)
    core = mbcore.Minibatch(source, batch_size=32, random_seed=5, **kw)
    for _ in range(9):          # past the end of the first epoch (203 rows)
        np.testing.assert_array_equal(f(), next(core))
    assert int(xb.rng_state.get_value()) == 9


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_source_and_an_array_share_one_draw(source, data, mode):
    kw = MODES[mode]
    y = np.arange(SHAPE[0], dtype=np.float64)
    xb, yb = minibatches(source, y, batch_size=24, random_seed=2, **kw)
    assert xb.shared is None and yb.shared is not None
    f = theano.function([], [xb, yb])
    core = mbcore.minibatches(source, y, batch_size=24, random_seed=2, **kw)
    for _ in range(10):
        (x, yy), (cx, cy) = f(), next(core)
        np.testing.assert_array_equal(x, cx)
        np.testing.assert_array_equal(yy, cy)
        np.testing.assert_array_equal(x, data[yy.astype(int)])


def test_a_memmap_is_read_in_place_as_an_array(data, tmp_path):
    np.save(tmp_path / "a.npy", data)
    mapped = np.load(tmp_path / "a.npy", mmap_mode="r")
    xb = Minibatch(mapped, batch_size=16, random_seed=4, replace=False)
    assert not isinstance(xb.owner.op, SourceOp)
    assert np.shares_memory(xb.shared.get_value(borrow=True), mapped)
    f = theano.function([], xb)
    core = mbcore.Minibatch(mapped, batch_size=16, random_seed=4, replace=False)
    for _ in range(5):
        np.testing.assert_array_equal(f(), next(core))


def test_state_round_trip_with_the_core(source):
    xb = Minibatch(source, batch_size=40, random_seed=3, epochs=True, epoch_end="drop")
    f = theano.function([], xb)
    for _ in range(7):
        f()
    state = xb.state_dict()
    assert state["step"] == 7
    core = mbcore.Minibatch(source, batch_size=40, random_seed=3, epochs=True,
                            epoch_end="drop")
    core.load_state_dict(state)
    np.testing.assert_array_equal(f(), next(core))
    core.seek(23)
    xb.load_state_dict(core.state_dict())
    np.testing.assert_array_equal(f(), next(core))


def test_pm_fit_on_a_npy_source(data, tmp_path):
    """A few hundred ADVI iterations on .npy files: one batch per
    iteration, the core's batches, the whole data's total_size."""
    w_true = np.array([1.5, -2.0, 0.5])
    np.save(tmp_path / "X.npy", data)
    np.save(tmp_path / "y.npy", data @ w_true)
    xb, yb = minibatches(str(tmp_path / "X.npy"), str(tmp_path / "y.npy"), batch_size=50,
                         random_seed=1)
    with pm.Model():
        w = pm.Normal("w", 0, 10, shape=3)
        pm.Normal("obs", tt.dot(xb, w), 0.1, observed=yb, total_size=yb.total_size)
        approx = pm.fit(300, progressbar=False, random_seed=1,
                        obj_optimizer=pm.adam(learning_rate=0.1))
    step = int(xb.rng_state.get_value())
    assert step >= 300 and yb.total_size == SHAPE[0]
    core = mbcore.minibatches(str(tmp_path / "X.npy"), str(tmp_path / "y.npy"),
                              batch_size=50, random_seed=1)
    core.seek(step)
    (x, y), (cx, cy) = theano.function([], [xb, yb])(), next(core)
    np.testing.assert_array_equal(x, cx)
    np.testing.assert_array_equal(y, cy)
    np.testing.assert_allclose(approx.bij.rmap(approx.params[0].get_value())["w"], w_true,
                               atol=0.3)


def test_pickled_op_of_a_npy_source_reopens_its_file(data, tmp_path):
    xb = Minibatch(_npy(data, tmp_path), batch_size=8, random_seed=6)
    op = pickle.loads(pickle.dumps(xb.owner.op))
    assert op.sources[0] is not xb.owner.op.sources[0]
    state = theano.shared(np.array(3, dtype=np.int64))
    f = theano.function([], op(state)[1])
    np.testing.assert_array_equal(f(), mbcore.Minibatch(data, 8, random_seed=6).draw(3))


def test_an_unpicklable_source_is_named(data):
    with h5py.File("in-memory.h5", "w", driver="core", backing_store=False) as h5:
        xb = Minibatch(h5.create_dataset("x", data=data, chunks=(32, 3)), batch_size=8)
        with pytest.raises(pickle.PicklingError, match=r"sources\[0\] = H5Source.* cannot be"):
            pickle.dumps(xb.owner.op)


def test_set_value_of_a_source_variable_is_refused(data, tmp_path):
    xb = Minibatch(_npy(data, tmp_path), batch_size=8)
    with pytest.raises(TypeError, match="set_value is not available for a Minibatch over a "
                                        "source"):
        xb.set_value(data)


def test_a_closed_source_is_refused(data, tmp_path):
    src = as_source(_npy(data, tmp_path))
    src.close()
    with pytest.raises(ValueError, match="data is closed: MemmapSource"):
        Minibatch(src, batch_size=8)
    live = RowSource(data)
    f = theano.function([], Minibatch(live, batch_size=8))
    f()
    live.close()
    with pytest.raises(ValueError, match=r"arrays\[0\] is closed: "):
        f()


def test_a_cast_not_asked_for_is_refused(data, tmp_path):
    np.save(tmp_path / "f32.npy", data.astype(np.float32))
    path = str(tmp_path / "f32.npy")
    with pytest.raises(TypeError, match=r"data is a source of dtype float32 and "
                                        r"theano.config.floatX is float64: pass "
                                        r"dtype='float64'"):
        Minibatch(path, batch_size=8)
    xb = Minibatch(path, batch_size=8, random_seed=2, dtype="float64")
    np.testing.assert_array_equal(
        theano.function([], xb)(),
        mbcore.Minibatch(data.astype(np.float32), 8, random_seed=2).draw(0).astype(np.float64))
    np.save(tmp_path / "big.npy", data.astype(">f8"))
    with pytest.raises(TypeError, match=r"data has dtype '>f8', which a Theano tensor cannot "
                                        r"hold.*dtype='float64'"):
        Minibatch(str(tmp_path / "big.npy"), batch_size=8)


def test_bad_arguments_name_the_argument(data, tmp_path):
    with pytest.raises(ValueError, match=r"epoch_end='short' is not available"):
        Minibatch(_npy(data, tmp_path), batch_size=8, epochs=True, epoch_end="short")
    with pytest.raises(ValueError, match=r"all variables must have the same length along "
                                         r"sampled axis 0, got arrays\[0\]: 203, arrays\[1\]: 5"):
        minibatches(_npy(data, tmp_path), np.arange(5.0), batch_size=2)
    with pytest.raises(FileNotFoundError, match="data names no file"):
        Minibatch(str(tmp_path / "missing.npy"), batch_size=8)
    with pytest.raises(ValueError, match="in_memory_size needs an array or a memory-mapped"):
        Minibatch(RowSource(data), batch_size=8, in_memory_size=10)


def test_perform_draws_what_the_thunk_draws(data, tmp_path):
    """DebugMode runs ``perform`` (and checks it against the thunk)."""
    y = np.arange(SHAPE[0], dtype=np.float64)
    xb, yb = minibatches(_npy(data, tmp_path), y, batch_size=16, random_seed=9, epochs=True)
    f = theano.function([], [xb, yb], mode="DebugMode")
    core = mbcore.minibatches(_npy(data, tmp_path), y, batch_size=16, random_seed=9,
                              epochs=True)
    for _ in range(3):
        for got, want in zip(f(), next(core)):
            np.testing.assert_array_equal(got, want)
