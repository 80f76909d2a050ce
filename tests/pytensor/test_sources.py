"""Minibatch over a Source in PyTensor graphs: a ``.npy`` file, a Zarr array
and a Dask array (synchronous scheduler) are held by the Op, and every
compiled function draws the batches of the core ``Minibatch`` /
``minibatches`` over the same source with the same arguments, step for
step, in every mode, on the C, Python, Numba and JAX backends; PyMC fits on
them; bad sources are refused with their argument named."""
import contextlib
import pickle
import warnings

import numpy as np
import pymc as pm
import pytensor
import pytest
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.traversal import graph_inputs

from mbcore import Minibatch as CoreMinibatch
from mbcore import MemmapSource, as_source, minibatches
from mbcore.adapters.pytensor import (Minibatch, SourceDraw, epoch, load_state_dict,
                                      minibatch_step, state_dict, total_size)

zarr = pytest.importorskip("zarr")
da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

SHAPE = (203, 3)
MODES = {
    "replace": {},
    "no-replace": {"replace": False},
    "wrap": {"epochs": True},
    "drop": {"epochs": True, "epoch_end": "drop"},
    "shard": {"shard": (1, 4)},
    "drop-shard": {"epochs": True, "epoch_end": "drop", "shard": (3, 4)},
}
BACKENDS = {
    "c": "FAST_RUN",
    "py": pytensor.compile.mode.Mode(linker="py", optimizer="fast_run"),
    "numba": "NUMBA",
}


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(11).standard_normal(SHAPE)


@pytest.fixture(autouse=True)
def synchronous_dask():
    with dask.config.set(scheduler="synchronous"):
        yield


def _npy(data, tmp_path):
    np.save(tmp_path / "x.npy", data)
    return str(tmp_path / "x.npy")


def _zarr(data, tmp_path):
    z = zarr.create_array(store=str(tmp_path / "x.zarr"), shape=data.shape, chunks=(32, 3),
                          dtype=data.dtype)
    z[...] = data
    return z


def _dask(data, tmp_path):
    return da.from_array(data, chunks=(32, 3))


KINDS = {"npy": _npy, "zarr": _zarr, "dask": _dask}


@pytest.fixture(params=sorted(KINDS))
def source(request, data, tmp_path):
    return KINDS[request.param](data, tmp_path)


def compiled(outputs, mode):
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*object mode.*")
        return pytensor.function([], outputs, mode=mode)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("mode", sorted(MODES))
def test_compiled_batches_equal_the_core_over_the_same_source(source, data, mode, backend):
    kw = MODES[mode]
    xb = Minibatch(source, batch_size=32, random_seed=5, **kw)
    assert isinstance(xb.owner.op, SourceDraw)
    assert xb.type.shape == CoreMinibatch(data, 32, random_seed=5, **kw).shape
    assert xb.type.dtype == "float64"
    f = compiled(xb, BACKENDS[backend])
    core = CoreMinibatch(source, batch_size=32, random_seed=5, **kw)
    for _ in range(9):          # past the end of the first epoch (203 rows)
        want = next(core)
        np.testing.assert_array_equal(f(), want)
    assert int(minibatch_step(xb).get_value()) == 9


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_source_and_an_array_share_one_draw(source, data, mode):
    kw = MODES[mode]
    y = np.arange(SHAPE[0], dtype=np.float64)
    xb, yb = Minibatch(source, y, batch_size=24, random_seed=2, **kw)
    f = compiled([xb, yb], "FAST_RUN")
    core = minibatches(source, y, batch_size=24, random_seed=2, **kw)
    for _ in range(10):
        (x, yy), (cx, cy) = f(), next(core)
        np.testing.assert_array_equal(x, cx)
        np.testing.assert_array_equal(yy, cy)
        np.testing.assert_array_equal(x, data[yy.astype(int)])
    assert total_size(xb) == total_size(yb) == SHAPE[0]


def test_jax_backend_draws_the_core_batches(source):
    pytest.importorskip("jax")
    xb = Minibatch(source, batch_size=16, random_seed=8, epochs=True)
    f = compiled(xb, "JAX")
    core = CoreMinibatch(source, batch_size=16, random_seed=8, epochs=True)
    for _ in range(4):
        np.testing.assert_array_equal(np.asarray(f()), next(core))


def test_state_round_trip_with_the_core(source):
    xb = Minibatch(source, batch_size=40, random_seed=3, epochs=True, epoch_end="drop")
    f = compiled(xb, "FAST_RUN")
    for _ in range(7):
        f()
    state = state_dict(xb)
    assert state["step"] == 7 and epoch(xb) == 1
    core = CoreMinibatch(source, batch_size=40, random_seed=3, epochs=True, epoch_end="drop")
    core.load_state_dict(state)
    np.testing.assert_array_equal(f(), next(core))
    core.seek(23)
    load_state_dict(xb, core.state_dict())
    assert epoch(xb) == 4
    np.testing.assert_array_equal(f(), next(core))
    other = CoreMinibatch(source, batch_size=40, random_seed=4, epochs=True, epoch_end="drop")
    with pytest.raises(ValueError):
        load_state_dict(xb, other.state_dict())


def test_pm_fit_on_a_source(data, tmp_path):
    """A few ADVI iterations on a .npy file: one batch per iteration, the
    same batches as the core's, and the whole data's total_size."""
    w_true = np.array([1.5, -2.0, 0.5])
    y = data @ w_true
    np.save(tmp_path / "X.npy", data)
    np.save(tmp_path / "y.npy", y)
    xb, yb = Minibatch(str(tmp_path / "X.npy"), str(tmp_path / "y.npy"), batch_size=50,
                       random_seed=1)
    assert total_size(yb) == SHAPE[0]
    with pm.Model():
        w = pm.Normal("w", 0, 10, shape=3)
        pm.Normal("obs", xb @ w, 0.1, observed=yb, total_size=total_size(yb))
        approx = pm.fit(300, progressbar=False, random_seed=0,
                        obj_optimizer=pm.adam(learning_rate=0.1))
    step = int(minibatch_step(xb).get_value())
    assert step >= 300
    core = minibatches(str(tmp_path / "X.npy"), str(tmp_path / "y.npy"), batch_size=50,
                       random_seed=1)
    core.seek(step)
    (x, yy), (cx, cy) = pytensor.function([], [xb, yb])(), next(core)
    np.testing.assert_array_equal(x, cx)
    np.testing.assert_array_equal(yy, cy)
    mean = approx.mean.eval()[:3]
    np.testing.assert_allclose(mean, w_true, atol=0.3)


def test_the_op_holds_the_source_and_has_no_data_variable(data, tmp_path):
    """A source is no graph input: the only shared variable is the step, so
    pm.set_data has nothing to set; another source needs a new Minibatch."""
    xb = Minibatch(_npy(data, tmp_path), batch_size=8)
    shared = [v for v in graph_inputs([xb]) if isinstance(v, SharedVariable)]
    assert shared == [minibatch_step(xb)]
    assert isinstance(xb.owner.op.sources[0], MemmapSource)


def test_pickled_op_of_a_npy_source_reopens_its_file(data, tmp_path):
    xb = Minibatch(_npy(data, tmp_path), batch_size=8, random_seed=6)
    f = compiled(xb, "FAST_RUN")
    copy = pickle.loads(pickle.dumps(f))
    np.testing.assert_array_equal(copy(), f())
    op = pickle.loads(pickle.dumps(xb.owner.op))
    assert op.sources[0] is not xb.owner.op.sources[0]
    assert op.sources[0].shape == SHAPE


def test_pickled_op_of_a_dask_source_keeps_its_graph(data):
    xb = Minibatch(da.from_array(data, chunks=(32, 3)), batch_size=8, random_seed=6)
    f = compiled(xb, "FAST_RUN")
    copy = pickle.loads(pickle.dumps(f))
    np.testing.assert_array_equal(copy(), f())


def test_pickled_op_of_a_zarr_source_reads_the_same_store(data, tmp_path):
    xb = Minibatch(_zarr(data, tmp_path), batch_size=8, random_seed=6)
    f = compiled(xb, "FAST_RUN")
    f()
    copy = pickle.loads(pickle.dumps(f))
    for _ in range(3):
        np.testing.assert_array_equal(copy(), f())


def test_an_unpicklable_source_is_named(data):
    h5py = pytest.importorskip("h5py")
    with h5py.File("in-memory.h5", "w", driver="core", backing_store=False) as h5:
        xb = Minibatch(h5.create_dataset("x", data=data, chunks=(32, 3)), batch_size=8)
        with pytest.raises(pickle.PicklingError, match=r"sources\[0\] = H5Source.* cannot be"):
            pickle.dumps(xb.owner.op)


def test_a_closed_source_is_refused(data, tmp_path):
    src = as_source(_npy(data, tmp_path))
    src.close()
    with pytest.raises(ValueError, match="variable 0 is closed: MemmapSource"):
        Minibatch(src, batch_size=8)
    live = as_source(_npy(data, tmp_path))
    f = compiled(Minibatch(live, batch_size=8), "FAST_RUN")
    f()
    live.close()
    with pytest.raises(ValueError, match=r"arrays\[0\] is closed: MemmapSource"):
        f()


def test_a_dtype_tensors_cannot_hold_needs_a_cast_asked_for(data, tmp_path):
    np.save(tmp_path / "big.npy", data.astype(">f8"))
    path = str(tmp_path / "big.npy")
    with pytest.raises(TypeError, match=r"variable 0 has dtype '>f8', which a PyTensor "
                                        r"tensor cannot hold.*dtype='float64'"):
        Minibatch(path, batch_size=8)
    xb = Minibatch(as_source(path, dtype="float64"), batch_size=8, random_seed=2)
    np.testing.assert_array_equal(compiled(xb, "FAST_RUN")(),
                                  CoreMinibatch(data, 8, random_seed=2).draw(0))


def test_bad_arguments_name_the_variable(data, tmp_path):
    with pytest.raises(ValueError, match=r"epoch_end='short' is not available"):
        Minibatch(_npy(data, tmp_path), batch_size=8, epochs=True, epoch_end="short")
    with pytest.raises(ValueError, match=r"all variables must have the same length along "
                                         r"sampled axis 0, got variable 0: 203, variable 1: 5"):
        Minibatch(_npy(data, tmp_path), np.arange(5.0), batch_size=2)
    with pytest.raises(ValueError, match=r"batch_size must be <= 203 \(the length of axis 0 "
                                         r"of variable 0\) when replace=False, got 300"):
        Minibatch(_npy(data, tmp_path), batch_size=300, replace=False)
    with pytest.raises(FileNotFoundError, match="variable 1 names no file"):
        Minibatch(data, str(tmp_path / "missing.npy"), batch_size=8)
