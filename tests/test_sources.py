"""Sources: ``as_source`` (the one way in) and Minibatch over a Source.

A Minibatch over a Source draws the indices exactly as over a NumPy array of
the same shape and seed, so every batch, in every mode, equals the array's;
a NumPy array in memory keeps the kernel's path, untouched.
"""
import copy
import pickle
import sys

import numpy as np
import pytest

from mbcore import Minibatch, as_source, minibatches
from mbcore import _source
from mbcore._kernels._gather import BatchIterator
from mbcore._memmap import MemmapSource

from row_source import RowSource


@pytest.fixture
def cube(rng):
    return rng.standard_normal((50, 6, 4))


def same_batches(a, b, steps=6):
    for _ in range(steps):
        x, y = next(a), next(b)
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)


# ------------------------------------------------------------------ as_source

@pytest.mark.parametrize("make", [
    lambda a: a, lambda a: a.T, lambda a: a[::-2], lambda a: np.asfortranarray(a),
    lambda a: np.broadcast_to(a[:1], a.shape), lambda a: a.tolist()])
def test_as_source_leaves_arrays_in_memory_to_the_kernel(data2d, make):
    assert as_source(make(data2d)) is None


def test_a_plain_ndarray_minibatch_keeps_the_kernel_path(data2d):
    mb = Minibatch(data2d, batch_size=8, random_seed=1)
    assert type(mb) is Minibatch
    # No Python frame per batch: next() is the C slot of BatchIterator.
    assert type(mb).__next__ is BatchIterator.__next__
    assert type(mb).next is BatchIterator.next
    assert mb.data is data2d
    np.testing.assert_array_equal(next(mb), data2d[mb.last_indices[0]])


def test_as_source_returns_a_source_itself(data2d):
    src = RowSource(data2d)
    assert as_source(src) is src


def test_as_source_opens_npy_paths_memory_mapped(tmp_path, data2d):
    path = tmp_path / "x.npy"
    np.save(path, data2d)
    for arg in (path, str(path)):
        src = as_source(arg)
        assert isinstance(src, MemmapSource)
        assert isinstance(src.array, np.memmap)
        np.testing.assert_array_equal(src.array, data2d)


def test_as_source_names_a_missing_or_bad_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="data names no file.*nope.npy"):
        as_source(tmp_path / "nope.npy")
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not an npy file")
    with pytest.raises(ValueError, match="data must name a .npy file.*bad.npy"):
        Minibatch(str(bad), batch_size=2)


def test_sources_of_other_libraries_are_imported_only_when_one_arrives(
        tmp_path, monkeypatch, data2d):
    (tmp_path / "fake_store_source.py").write_text(
        "from mbcore import Source\n"
        "class FakeSource(Source):\n"
        "    def __init__(self, obj):\n"
        "        self.obj = obj\n"
        "        self.shape = obj.array.shape\n"
        "        self.dtype = obj.array.dtype\n"
        "    def gather(self, indices, out):\n"
        "        out[...] = self.obj.array[indices[0]]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(_source.SOURCES, "fakestore", "fake_store_source:FakeSource")
    monkeypatch.delitem(sys.modules, "fake_store_source", raising=False)

    class StoreArray:
        def __init__(self, array):
            self.array = array
    StoreArray.__module__ = "fakestore.core"

    assert as_source(np.zeros(3)) is None
    assert "fake_store_source" not in sys.modules
    obj = StoreArray(data2d)
    src = as_source(obj)
    assert "fake_store_source" in sys.modules
    assert type(src).__name__ == "FakeSource" and src.obj is obj
    same_batches(Minibatch(obj, batch_size=5, random_seed=3),
                 Minibatch(data2d, batch_size=5, random_seed=3))


def test_the_registry_names_the_sources_of_zarr_h5py_and_dask():
    assert _source.SOURCES == {"zarr": "mbcore._source_zarr:ZarrSource",
                               "h5py": "mbcore._source_h5py:H5Source",
                               "dask": "mbcore._source_dask:DaskSource"}


# ------------------------------------------------------------------ batches

SPECS = [
    dict(batch_size=7),
    dict(batch_size=7, replace=False),
    dict(batch_size=[5, None, 2]),
    dict(batch_size=[(4, 9), Ellipsis, (3, 11)], replace=False),
    dict(batch_size=[None, 3]),
    dict(batch_size=8, epochs=True),
    dict(batch_size=8, epochs=True, epoch_end="drop"),
    dict(batch_size=8, epochs=True, epoch_end="short"),
    dict(batch_size=[6, 4], epochs=True, epoch_end="short"),
    dict(batch_size=8, shard=(1, 4)),
    dict(batch_size=8, epochs=True, shard=(0, 2)),
    dict(batch_size=8, replace=False, shard=(1, 2)),
    dict(batch_size=8, epochs=True, epoch_end="short", shard=(3, 4)),
]


@pytest.mark.parametrize("spec", SPECS, ids=repr)
def test_batches_equal_those_of_the_array_step_for_step(cube, spec):
    src = RowSource(cube)
    a = Minibatch(src, random_seed=5, **spec)
    b = Minibatch(cube, random_seed=5, **spec)
    assert a.shape == b.shape and a.dtype == b.dtype and a.total_size == b.total_size
    for t in range(25):
        x, y = next(a), next(b)
        np.testing.assert_array_equal(x, y)
        assert x.shape == y.shape
        for u, v in zip(a.last_indices, b.last_indices):
            assert (u is None and v is None) or np.array_equal(u, v)
        assert a.epoch == b.epoch
    assert a.step == b.step == 25
    np.testing.assert_array_equal(a.draw(3), b.draw(3))
    for u, v in zip(a.indices(40), b.indices(40)):
        assert (u is None and v is None) or np.array_equal(u, v)
    a.seek(9)
    b.seek(9)
    same_batches(a, b, 3)
    assert a.state_dict() == b.state_dict()


def test_the_source_gathers_the_drawn_indices_and_gets_the_next_prefetched(cube):
    src = RowSource(cube)
    mb = Minibatch(src, batch_size=[4, None, 2], random_seed=2)
    next(mb)
    next(mb)
    assert len(src.gathered) == 2
    for got, want in zip(src.gathered[1], mb.indices(1)):
        assert (got is None and want is None) or np.array_equal(got, want)
    # After batch t, the rows of batch t + 1 are announced.
    for got, want in zip(src.prefetched[-1], mb.indices(2)):
        assert (got is None and want is None) or np.array_equal(got, want)


def test_out_is_filled_and_checked_before_the_step_moves(cube):
    mb = Minibatch(RowSource(cube), batch_size=5, random_seed=1)
    out = np.empty((5, 6, 4))
    assert mb.next(out) is out
    np.testing.assert_array_equal(out, cube[mb.last_indices[0]])
    assert mb.draw(0, out=out) is out
    for bad in (np.empty((5, 6, 3)), np.empty((5, 6, 4), np.float32),
                np.empty((6, 5, 4)).transpose(1, 0, 2), [0.0]):
        with pytest.raises(ValueError, match=r"out must be a writeable C-contiguous array "
                                             r"of shape \(5, 6, 4\) and dtype float64"):
            mb.next(bad)
    assert mb.step == 1


def test_aligned_groups_with_source_members(cube, rng):
    y = rng.standard_normal(50)
    for kw in (dict(batch_size=9), dict(batch_size=9, epochs=True, epoch_end="short"),
               dict(batch_size=9, replace=False)):
        g = minibatches(RowSource(cube), y, random_seed=4, **kw)
        h = minibatches(cube, y, random_seed=4, **kw)
        for _ in range(8):
            for u, v in zip(next(g), next(h)):
                np.testing.assert_array_equal(u, v)
        g.seek(2)
        h.seek(2)
        for u, v in zip(next(g), next(h)):
            np.testing.assert_array_equal(u, v)
        assert g.state_dict() == h.state_dict()


def test_set_value_takes_a_source_or_an_array(cube):
    mb = Minibatch(RowSource(cube), batch_size=4, random_seed=6)
    next(mb)
    last = mb.last_indices
    mb.set_value(RowSource(cube * 2))
    np.testing.assert_array_equal(mb.last_indices[0], last[0])
    np.testing.assert_array_equal(next(mb), 2 * cube[mb.last_indices[0]])
    mb.set_value(cube + 1)
    np.testing.assert_array_equal(next(mb), 1 + cube[mb.last_indices[0]])
    with pytest.raises(ValueError, match="value must have ndim=3"):
        mb.set_value(RowSource(cube[:, 0]))


def test_pickle_and_deepcopy_continue_the_stream(cube):
    mb = Minibatch(RowSource(cube), batch_size=4, random_seed=6, epochs=True)
    next(mb)
    for other in (pickle.loads(pickle.dumps(mb)), copy.deepcopy(mb)):
        assert other.step == 1
        np.testing.assert_array_equal(next(other), mb.draw(1))


def test_a_cast_is_made_when_asked_for_and_allowed(cube):
    mb = Minibatch(RowSource(cube), batch_size=4, dtype=np.float32, random_seed=1)
    assert mb.dtype == np.float32
    np.testing.assert_array_equal(next(mb), cube[mb.last_indices[0]].astype(np.float32))
    ints = Minibatch(RowSource(cube), batch_size=4, dtype="int16", casting="unsafe")
    np.testing.assert_array_equal(next(ints), cube[ints.last_indices[0]].astype("int16"))


# ------------------------------------------------------------------ errors

def test_a_cast_the_rule_forbids_names_dtype_and_casting(cube):
    with pytest.raises(TypeError, match=r"data must have a dtype that casts to int32, got "
                                        r"float64 \(casting='same_kind'"):
        Minibatch(RowSource(cube), batch_size=4, dtype="int32")
    with pytest.raises(TypeError, match=r"arrays\[0\] must have a dtype that casts to "
                                        r"float32, got float64 \(casting='safe'"):
        minibatches(RowSource(cube), cube, batch_size=4, dtype="float32", casting="safe")


@pytest.mark.parametrize("unknown", [None, float("nan")])
def test_an_axis_of_unknown_length_is_refused(cube, unknown):
    with pytest.raises(ValueError, match=r"data has an axis of unknown length: axis 0 of "
                                         r"shape \((None|nan), 6, 4\)"):
        Minibatch(RowSource(cube, shape=(unknown, 6, 4)), batch_size=4)


def test_a_shape_that_is_not_ints_is_refused(cube):
    with pytest.raises(TypeError, match=r"data must have a shape of non-negative ints, "
                                        r"got \(50.5, 6, 4\)"):
        Minibatch(RowSource(cube, shape=(50.5, 6, 4)), batch_size=4)


def test_a_closed_source_is_refused(cube):
    src = RowSource(cube)
    mb = Minibatch(src, batch_size=4)
    src.close()
    with pytest.raises(ValueError, match="data is closed: .*RowSource"):
        Minibatch(src, batch_size=4)
    with pytest.raises(ValueError, match="data is closed: .*RowSource"):
        next(mb)
    assert mb.step == 0


def test_in_memory_size_needs_an_array(cube):
    with pytest.raises(ValueError, match="in_memory_size needs an array or a memory-mapped "
                                         "file, got data=.*RowSource"):
        Minibatch(RowSource(cube), batch_size=4, in_memory_size=10)


def test_a_source_without_rows_to_sample_is_refused(cube):
    with pytest.raises(ValueError, match=r"data has an empty sampled axis 0 \(shape "
                                         r"\(0, 6, 4\)\)"):
        Minibatch(RowSource(cube[:0]), batch_size=4)


def test_threads_sharing_one_minibatch_draw_every_step_once(cube):
    import threading
    mb = Minibatch(RowSource(cube), batch_size=3, random_seed=8)
    got = []

    def work():
        for _ in range(50):
            got.append(next(mb).tobytes())
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert mb.step == 200
    ref = Minibatch(cube, batch_size=3, random_seed=8)
    assert sorted(got) == sorted(ref.draw(t).tobytes() for t in range(200))
