"""``BatchSpec`` over sources: the data an adapter cannot hand to the kernel.

For every source kind (a user's Source, a ``.npy`` path, a MemmapSource, a
zarr and an h5py array, a Dask array on the synchronous scheduler) and every
sampling mode, ``spec.draw(t, source)``, ``spec.bind`` and ``spec.bind_one``
equal the core ``Minibatch`` / ``minibatches`` over the same source with the
same arguments, and the array in memory.  Arrays (memory-mapped ones
included) keep the kernel's C-level callables.
"""
import functools

import numpy as np
import pytest

from mbcore import BatchSpec, MemmapSource, Minibatch, Source, minibatches
from mbcore._kernels._gather import Sampler, draw_group

from row_source import RowSource

MODES = {
    "replace": {},
    "no-replace": {"replace": False},
    "wrap": {"epochs": True},
    "drop": {"epochs": True, "epoch_end": "drop"},
    "short": {"epochs": True, "epoch_end": "short"},
    "shard": {"shard": (1, 4)},
    "shard-short": {"epochs": True, "epoch_end": "short", "shard": (2, 4)},
}


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(5).standard_normal((103, 3, 2))


def _zarr(data, tmp_path):
    zarr = pytest.importorskip("zarr")
    z = zarr.create_array(store=str(tmp_path / "d.zarr"), shape=data.shape,
                          chunks=(16, 3, 2), dtype=data.dtype)
    z[...] = data
    return z


def _h5(data, tmp_path):
    h5py = pytest.importorskip("h5py")
    f = h5py.File(tmp_path / "d.h5", "w")
    f.create_dataset("d", data=data, chunks=(16, 3, 2))
    return f["d"]


def _dask(data, tmp_path):
    da = pytest.importorskip("dask.array")
    return da.from_array(data, chunks=(16, 3, 2))


def _npy(data, tmp_path):
    np.save(tmp_path / "d.npy", data)
    return str(tmp_path / "d.npy")


def _memmap(data, tmp_path):
    np.save(tmp_path / "m.npy", data)
    return MemmapSource(np.load(tmp_path / "m.npy", mmap_mode="r"))


KINDS = {"user": lambda d, p: RowSource(d), "npy": _npy, "memmap-source": _memmap,
         "zarr": _zarr, "h5py": _h5, "dask": _dask}


@pytest.fixture(params=sorted(KINDS))
def source(request, data, tmp_path):
    import contextlib
    with contextlib.ExitStack() as stack:
        try:
            import dask
            stack.enter_context(dask.config.set(scheduler="synchronous"))
        except ImportError:
            pass
        yield KINDS[request.param](data, tmp_path)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_draw_equals_core_minibatch_over_the_same_source(source, data, mode):
    kw = MODES[mode]
    spec = BatchSpec(24, random_seed=9, **kw)
    core = Minibatch(source, batch_size=24, random_seed=9, **kw)
    array = Minibatch(data, batch_size=24, random_seed=9, **kw)
    bound, one = spec.bind(source), spec.bind_one(source)
    for t in range(12):          # past an epoch's end: 103 rows, 24 a batch
        want = core.draw(t)
        np.testing.assert_array_equal(want, array.draw(t))
        for got in (spec.draw(t, source)[0], bound(t)[0], one(t)):
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)


def test_group_of_a_source_and_an_array_shares_the_draw(source, data):
    y = np.arange(103.0)
    for kw in MODES.values():
        spec = BatchSpec(16, random_seed=4, **kw)
        core = minibatches(source, y, batch_size=16, random_seed=4, **kw)
        for t in (0, 6, 7, 13):
            xb, yb = spec.draw(t, source, y)
            cx, cy = core.draw(t)
            np.testing.assert_array_equal(xb, cx)
            np.testing.assert_array_equal(yb, cy)
            np.testing.assert_array_equal(xb, data[yb.astype(int)])


def test_two_axes_sampled_from_a_source(source, data):
    spec = BatchSpec([10, (2, 3)], random_seed=1)
    core = Minibatch(source, batch_size=[10, (2, 3)], random_seed=1)
    for t in range(4):
        np.testing.assert_array_equal(spec.draw(t, source)[0], core.draw(t))
        rows, cols = spec.indices(t, data.shape)[:2]
        np.testing.assert_array_equal(spec.draw(t, source)[0], data[np.ix_(rows, cols)])


def test_out_is_filled_and_returned(source):
    spec = BatchSpec(8, random_seed=2)
    out = np.empty((8, 3, 2))
    (got,) = spec.draw(3, source, out=[out])
    assert got is out
    np.testing.assert_array_equal(out, Minibatch(source, batch_size=8, random_seed=2).draw(3))
    with pytest.raises(ValueError, match="out must be a writeable C-contiguous array of shape"):
        spec.draw(3, source, out=[np.empty((7, 3, 2))])


def test_sizes_and_state_of_a_source_are_those_of_its_shape(source, data):
    spec = BatchSpec(24, random_seed=9, epochs=True)
    prepared = spec.prepare(source)
    assert isinstance(prepared, Source) and prepared.shape == data.shape
    assert spec.total_size(prepared.shape) == 103
    assert spec.batch_shape(prepared.shape) == (24, 3, 2)
    core = Minibatch(source, batch_size=24, random_seed=9, epochs=True)
    core.seek(17)
    assert spec.state_dict(17, prepared.shape) == core.state_dict()
    assert spec.check_state(core.state_dict(), prepared.shape) == 17


def test_arrays_keep_the_kernels_callables(data, tmp_path):
    """Arrays, a memory-mapped one included, are drawn by the Sampler's C
    method and draw_group, not through a Source."""
    np.save(tmp_path / "a.npy", data)
    mapped = np.load(tmp_path / "a.npy", mmap_mode="r")
    spec = BatchSpec(16, random_seed=3)
    for arr in (data, mapped):
        kept = spec.prepare(arr)
        assert isinstance(kept, np.ndarray) and np.shares_memory(kept, arr)   # no copy
        one = spec.bind_one(arr)
        # The compiled Sampler.draw of a Sampler of the array itself.
        assert one.__func__ is Sampler.draw and type(one.__self__) is Sampler
        assert np.shares_memory(one.__self__.data, arr)
        group = spec.bind(arr, np.arange(103))
        assert isinstance(group, functools.partial) and group.func is draw_group
    src = RowSource(data)
    assert isinstance(spec.bind_one(src), functools.partial)
    np.testing.assert_array_equal(spec.bind_one(src)(5), spec.bind_one(data)(5))


def test_in_memory_size_of_a_npy_path_is_an_array(data, tmp_path):
    np.save(tmp_path / "a.npy", data)
    spec = BatchSpec(8)
    part = spec.prepare(str(tmp_path / "a.npy"), in_memory_size=50)
    assert isinstance(part, np.ndarray) and part.shape == (50, 3, 2)
    np.testing.assert_array_equal(part, data[:50])
    with pytest.raises(ValueError, match="in_memory_size needs an array or a memory-mapped"):
        spec.prepare(RowSource(data), in_memory_size=50)


def test_bad_sources_are_named_in_the_errors(data, tmp_path):
    spec = BatchSpec(8, replace=False)
    src = RowSource(data)
    src.close()
    with pytest.raises(ValueError, match=r"arrays\[0\] is closed"):
        spec.draw(0, src)
    live = RowSource(data)
    f = spec.bind_one(live)
    live.close()
    with pytest.raises(ValueError, match=r"arrays\[0\] is closed"):
        f(0)
    with pytest.raises(TypeError, match=r"value must have a dtype that casts to int32, got "
                                        r"float64 \(casting='same_kind'"):
        spec.prepare(RowSource(data), "int32", "value", casting="same_kind")
    with pytest.raises(ValueError, match=r"value must have ndim=2, got ndim=3"):
        spec.prepare(RowSource(data), what="value", ndim=2)
    with pytest.raises(ValueError, match=r"batch_size must be <= 5 \(the length of axis 0 of "
                                         r"x\) when replace=False, got 8"):
        spec.prepare(RowSource(data[:5]), what="x")
    with pytest.raises(FileNotFoundError, match="arrays.0. names no file"):
        spec.draw(0, str(tmp_path / "missing.npy"))
    with pytest.raises(ValueError, match=r"all variables must have the same length along "
                                         r"sampled axis 0"):
        spec.draw(0, RowSource(data), np.arange(100))


def test_a_cast_asked_for_is_made_batch_by_batch(data):
    spec = BatchSpec(8, random_seed=6)
    cast = spec.prepare(RowSource(data), "float32", casting="same_kind")
    assert cast.dtype == np.float32
    np.testing.assert_array_equal(spec.draw(2, cast)[0],
                                  spec.draw(2, data)[0].astype(np.float32))
