"""Zarr arrays and HDF5 datasets as row sources (mbcore._source_zarr,
mbcore._source_h5py over mbcore._chunks): a gather equals NumPy's outer
indexing of the same data for every mix of sampled and whole axes, repeats
and any order; each touched chunk is read once per batch; the LRU cache and
the read-ahead hold what they say; bad input is refused by name."""
import threading

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")
h5py = pytest.importorskip("h5py")

from mbcore._chunks import DEFAULT_CACHE_BYTES, ChunkCache, ChunkGrid  # noqa: E402
from mbcore._source_h5py import H5Source  # noqa: E402
from mbcore._source_zarr import ZarrSource  # noqa: E402

SHAPE = (503, 7, 11)
CHUNKS = (50, 3, 4)


def reference(data, indices):
    return data[np.ix_(*[np.arange(n) if i is None else i
                         for i, n in zip(indices, data.shape)])]


def gathered(src, indices):
    want = tuple(n if i is None else len(i) for i, n in zip(indices, src.shape))
    out = np.empty(want, src.dtype)
    src.gather(indices, out)
    return out


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(11).standard_normal(SHAPE)


@pytest.fixture(scope="module")
def h5file(tmp_path_factory):
    f = h5py.File(tmp_path_factory.mktemp("h5") / "data.h5", "w")
    yield f
    f.close()


def make_zarr(data, chunks=CHUNKS, **kw):
    z = zarr.create_array(store={}, shape=data.shape, chunks=chunks, dtype=data.dtype)
    z[...] = data
    return ZarrSource(z, **kw)


_H5_NAMES = iter(range(10**6))


def make_h5(h5file, data, chunks=CHUNKS, **kw):
    d = h5file.create_dataset(f"d{next(_H5_NAMES)}", data=data, chunks=chunks)
    return H5Source(d, **kw)


@pytest.fixture(params=["zarr", "h5-chunked", "h5-contiguous"])
def make(request, h5file):
    """A factory: a source of the kind under test over the given array."""
    if request.param == "zarr":
        return make_zarr
    chunks = None if request.param == "h5-contiguous" else CHUNKS
    return lambda data, chunks=chunks, **kw: make_h5(h5file, data, chunks, **kw)


def cases(rng):
    r = lambda n, b: rng.integers(0, n, b)  # noqa: E731
    return {
        "rows": (r(503, 64), None, None),
        "rows-repeated-unsorted": (np.array([502, 0, 77, 502, 3, 0, 450]), None, None),
        "one-row": (np.array([251]), None, None),
        "two-axes": (r(503, 10), r(7, 5), None),
        "first-and-last": (r(503, 10), None, r(11, 9)),
        "inner-axes": (None, r(7, 5), r(11, 9)),
        "all-axes": (r(503, 10), r(7, 3), r(11, 9)),
        "all-axes-repeats": (np.array([5, 5, 499]), np.array([6, 0, 6]), np.array([10, 10])),
        "empty": (np.array([], np.int64), None, None),
    }


CASES = list(cases(np.random.default_rng(0)))


@pytest.mark.parametrize("case", CASES)
def test_gather_equals_numpy_outer_indexing(make, data, case):
    indices = cases(np.random.default_rng(1))[case]
    src = make(data)
    np.testing.assert_array_equal(gathered(src, indices), reference(data, indices))
    np.testing.assert_array_equal(gathered(src, indices), reference(data, indices))  # cached


@pytest.mark.parametrize("dtype", ["f4", "i2", "u1", "bool", "c16", ">f8"])
def test_gather_keeps_each_dtype(make, dtype):
    data = (np.arange(40 * 6) % 7).astype(dtype).reshape(40, 6)
    src = make(data, chunks=(9, 4))
    assert src.dtype == np.dtype(dtype)
    idx = (np.array([39, 0, 9, 9, 18]), None)
    np.testing.assert_array_equal(gathered(src, idx), data[idx[0]])


def test_one_dimensional_arrays_and_clipped_edge_chunks(make):
    data = np.arange(101.0)
    src = make(data, chunks=(10,))
    idx = (np.array([100, 99, 90, 0, 100]),)
    np.testing.assert_array_equal(gathered(src, idx), data[idx[0]])


def test_each_touched_chunk_is_read_once_per_batch(make, data):
    src = make(data, cache_bytes=0)
    rows = np.array([0, 49, 1, 50, 499, 0, 502, 120, 121])   # chunks 0, 1, 2, 9, 10 of axis 0
    cols = np.array([0, 6, 1])                              # chunks 0, 2 of axis 1
    for _ in range(2):                                      # no cache: read again, once each
        gathered(src, (rows, cols, None))
    touched = len(np.unique(rows // 50)) * len(np.unique(cols // 3)) * 3   # axis 2 whole
    if src.grid.size[0] == 50:
        assert src.stats["chunks_read"] == 2 * touched
    else:                                                   # contiguous: runs of rows
        runs = len(np.unique(rows // src.grid.size[0]))
        assert src.stats["chunks_read"] == 2 * runs
    assert src.stats["cache_hits"] == 0


def test_io_amplification_counts_decoded_chunk_bytes(data):
    src = make_zarr(data, cache_bytes=0)
    rows = np.array([0, 1, 2, 3])                           # all in chunk row 0
    gathered(src, (rows, None, None))
    chunk_bytes = 50 * 7 * 11 * 8                           # the 3 x 3 chunks of rows 0..49
    assert src.stats["bytes_read"] == chunk_bytes
    assert src.stats["bytes_returned"] == 4 * 7 * 11 * 8
    assert src.amplification == pytest.approx(50 / 4)


def test_cached_chunks_are_not_read_again(make, data):
    src = make(data)
    idx = (np.array([3, 260, 400]), None, None)
    gathered(src, idx)
    read = src.stats["chunks_read"]
    assert read > 0 and src.stats["cache_hits"] == 0
    gathered(src, idx)
    assert src.stats["chunks_read"] == read
    assert src.stats["cache_hits"] == read


def test_cache_is_bounded_and_evicts_the_least_recently_used():
    cache = ChunkCache(3 * 800)
    for k in range(3):
        cache.put((k,), np.zeros(100))                      # 800 bytes each
    assert cache.get((0,)) is not None                      # 0 is now the most recent
    cache.put((3,), np.zeros(100))
    assert (1,) not in cache and (0,) in cache and (2,) in cache and (3,) in cache
    assert cache.nbytes == 3 * 800 <= cache.capacity
    cache.put((4,), np.zeros(1000))                         # larger than the cache: not kept
    assert (4,) not in cache and len(cache) == 3


def test_cache_stays_within_its_bytes_over_many_batches(make, data):
    src = make(data, cache_bytes=100_000)
    rng = np.random.default_rng(2)
    for _ in range(20):
        idx = (rng.integers(0, 503, 30), None, None)
        np.testing.assert_array_equal(gathered(src, idx), reference(data, idx))
        assert src.cache.nbytes <= 100_000


def test_default_cache_is_256_mib(data):
    assert DEFAULT_CACHE_BYTES == 256 * 2**20
    assert make_zarr(data).cache.capacity == DEFAULT_CACHE_BYTES


def test_prefetch_reads_the_next_batch_on_a_background_thread(make, data, monkeypatch):
    src = make(data)
    threads = set()
    read = type(src)._read

    def spy(self, keys):
        threads.add(threading.current_thread().name)
        return read(self, keys)

    monkeypatch.setattr(type(src), "_read", spy)
    idx = (np.array([7, 300, 480, 7]), None, None)
    src.prefetch(idx)
    src._wait_readahead()
    read_ahead = src.stats["chunks_read"]
    assert read_ahead > 0
    assert threads and all(name.startswith("mbcore-readahead") for name in threads)
    np.testing.assert_array_equal(gathered(src, idx), reference(data, idx))
    assert src.stats["chunks_read"] == read_ahead           # gather found them all
    assert src.stats["cache_hits"] == read_ahead
    src.close()


def test_prefetch_without_readahead_reads_nothing(make, data):
    src = make(data, readahead=False)
    src.prefetch((np.array([1, 2]), None, None))
    assert src.stats["chunks_read"] == 0


def test_gathers_interleaved_with_prefetches_equal_numpy(make, data):
    src = make(data, cache_bytes=60_000)                   # smaller than a batch's chunks
    rng = np.random.default_rng(3)
    batches = [(rng.integers(0, 503, 40), None, rng.integers(0, 11, 5)) for _ in range(8)]
    src.prefetch(batches[0])
    for t, idx in enumerate(batches):
        if t + 1 < len(batches):
            src.prefetch(batches[t + 1])
        np.testing.assert_array_equal(gathered(src, idx), reference(data, idx))
    src.close()
    with pytest.raises(ValueError, match="closed"):
        gathered(src, batches[0])


def test_cast_asked_for_is_applied_to_each_chunk(make, data):
    src = make(data, dtype=np.float32)
    idx = (np.array([9, 400]), None, None)
    assert src.dtype == np.float32
    np.testing.assert_array_equal(gathered(src, idx), data[idx[0]].astype(np.float32))


def test_cast_not_allowed_by_casting_is_refused(make, data):
    with pytest.raises(TypeError, match=r"float64.*int32.*casting='same_kind'"):
        make(data, dtype=np.int32)
    src = make(data, dtype=np.int32, casting="unsafe")
    assert src.dtype == np.int32
    with pytest.raises(ValueError, match="casting must be one of"):
        make(data, casting="sometimes")


def test_h5_variable_length_strings_need_a_cast(h5file):
    d = h5file.create_dataset("strings", data=np.array(["a", "bc"], dtype=object),
                              dtype=h5py.string_dtype())
    with pytest.raises(TypeError, match="Python objects.*pass dtype="):
        H5Source(d)


def test_zarr_variable_length_strings_need_a_cast():
    z = zarr.create_array(store={}, shape=(4,), dtype=str)
    z[...] = np.array(["a", "bc", "d", "e"])
    if not np.dtype(z.dtype).hasobject:
        pytest.skip(f"zarr {zarr.__version__} gives strings the fixed-size dtype {z.dtype}")
    with pytest.raises(TypeError, match="Python objects"):
        ZarrSource(z)


def test_closed_h5_file_is_refused_at_construction_and_at_gather(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        d = f.create_dataset("x", data=np.zeros((10, 2)), chunks=(5, 2))
        src = H5Source(d)
    with pytest.raises(ValueError, match=r"HDF5 file of dataset .*a.h5:/x is closed"):
        gathered(src, (np.array([1]), None))
    with pytest.raises(ValueError, match="open HDF5 file, got a dataset of a closed file"):
        H5Source(d)


def test_h5_empty_dataspace_has_no_axis_to_sample(h5file):
    d = h5file.create_dataset("empty", data=h5py.Empty("f8"))
    with pytest.raises(ValueError, match="no shape"):
        H5Source(d)


def test_zero_dimensional_arrays_are_refused(h5file):
    z = zarr.create_array(store={}, shape=(), dtype="f8")
    with pytest.raises(ValueError, match="at least one axis"):
        ZarrSource(z)
    with pytest.raises(ValueError, match="at least one axis"):
        H5Source(h5file.create_dataset("scalar", data=1.0))


def test_wrong_kinds_of_objects_are_refused(data):
    with pytest.raises(TypeError, match="array must be a zarr.Array, got ndarray"):
        ZarrSource(data)
    with pytest.raises(TypeError, match="dataset must be an h5py.Dataset, got ndarray"):
        H5Source(data)
    with pytest.raises(ValueError, match=r"cache_bytes must be an int >= 0, got -1"):
        make_zarr(data, cache_bytes=-1)


def test_bad_indices_and_out_are_refused_by_name(make, data):
    src = make(data)
    with pytest.raises(IndexError, match=r"indices\[0\] holds 503, out of range for axis 0"):
        gathered(src, (np.array([0, 503]), None, None))
    with pytest.raises(IndexError, match=r"indices\[2\] holds -1"):
        gathered(src, (None, None, np.array([-1])))
    with pytest.raises(ValueError, match="one entry per axis"):
        src.gather((np.array([0]),), np.empty((1, 7, 11)))
    with pytest.raises(ValueError, match=r"out must be .* shape \(2, 7, 11\)"):
        src.gather((np.array([0, 1]), None, None), np.empty((3, 7, 11)))
    with pytest.raises(ValueError, match="dtype float64"):
        src.gather((np.array([0, 1]), None, None), np.empty((2, 7, 11), np.float32))


def test_irregular_grids_locate_positions_by_their_bounds():
    grid = ChunkGrid((10,), [(3, 3, 4)])
    groups = grid.group_axis(0, np.array([9, 0, 3, 2, 6]))
    assert [(k, pos.tolist(), loc.tolist()) for k, pos, loc in groups] == [
        (0, [1, 3], [0, 2]), (1, [2], [0]), (2, [0, 4], [3, 0])]
    with pytest.raises(ValueError, match="do not sum to the axis length 10"):
        ChunkGrid((10,), [(3, 3)])


# ---------------------------------------------------------------- Minibatch

MODES = [dict(), dict(epochs=True), dict(epochs=True, epoch_end="drop"),
         dict(epochs=True, epoch_end="short"), dict(replace=False)]
MODE_IDS = ["replace", "epochs-wrap", "epochs-drop", "epochs-short", "no-replace"]


@pytest.fixture(params=["zarr", "h5"])
def store_of(request, h5file):
    """A factory: a Zarr array or an HDF5 dataset holding the given array."""
    def make(data, chunks):
        if request.param == "zarr":
            z = zarr.create_array(store={}, shape=data.shape, chunks=chunks, dtype=data.dtype)
            z[...] = data
            return z
        return h5file.create_dataset(f"mb{next(_H5_NAMES)}", data=data, chunks=chunks)
    return make


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_minibatch_over_a_store_equals_minibatch_over_the_array(store_of, mode):
    from mbcore import Minibatch
    data = np.random.default_rng(5).standard_normal((300, 6))
    mem = Minibatch(data, 32, random_seed=3, **mode)
    mb = Minibatch(store_of(data, (40, 4)), 32, random_seed=3, **mode)
    assert type(mb.data).__name__ in ("ZarrSource", "H5Source")
    for _ in range(25):                                     # several epochs of 300 rows
        np.testing.assert_array_equal(next(mb), next(mem))
    mb.seek(3)
    mem.seek(3)
    np.testing.assert_array_equal(next(mb), next(mem))


def test_minibatch_over_a_store_samples_several_axes(store_of):
    from mbcore import Minibatch
    data = np.random.default_rng(6).standard_normal((120, 30, 3))
    mem = Minibatch(data, [16, 5], random_seed=8)
    mb = Minibatch(store_of(data, (25, 7, 3)), [16, 5], random_seed=8)
    for _ in range(6):
        np.testing.assert_array_equal(next(mb), next(mem))


@pytest.mark.parametrize("mode", MODES[:3], ids=MODE_IDS[:3])
def test_each_shard_gathers_only_its_share(store_of, mode):
    from mbcore import Minibatch
    data = np.random.default_rng(7).standard_normal((400, 5))
    store = store_of(data, (50, 5))
    world, b = 4, 32
    mem = Minibatch(data, b, random_seed=2, **mode)
    shards = [Minibatch(store, b, random_seed=2, shard=(r, world), **mode) for r in range(world)]
    for _ in range(10):
        parts = [next(s) for s in shards]
        assert all(p.shape == (b // world, 5) for p in parts)
        np.testing.assert_array_equal(np.concatenate(parts), next(mem))
    for s in shards:
        assert s.data.stats["bytes_returned"] == 10 * (b // world) * 5 * 8


def test_minibatch_refuses_a_dataset_whose_file_was_closed(tmp_path):
    from mbcore import Minibatch
    f = h5py.File(tmp_path / "b.h5", "w")
    mb = Minibatch(f.create_dataset("x", data=np.zeros((20, 2)), chunks=(5, 2)), 4)
    next(mb)
    f.close()
    assert mb.data.closed
    with pytest.raises(ValueError, match="closed"):
        next(mb)


@pytest.mark.parametrize("kind", ["zarr-memory", "zarr-directory", "h5"])
def test_minibatch_over_a_store_pickles_and_resumes_its_stream(kind, tmp_path):
    """A pickle holds the store (an HDF5 dataset by its file's name and its
    path, opened read-only again), the settings and the step; the loaded
    Minibatch draws the same batches, with a cache and counters of its own."""
    import pickle

    from mbcore import Minibatch
    data = np.random.default_rng(12).standard_normal((300, 6))
    if kind == "h5":
        with h5py.File(tmp_path / "p.h5", "w") as f:
            f.create_dataset("x", data=data, chunks=(40, 6))
        f = h5py.File(tmp_path / "p.h5", "r")
        store = f["x"]
    else:
        where = {} if kind == "zarr-memory" else str(tmp_path / "p.zarr")
        store = zarr.create_array(store=where, shape=data.shape, chunks=(40, 6), dtype=data.dtype)
        store[...] = data
    source = (H5Source if kind == "h5" else ZarrSource)(store, cache_bytes=10**6)
    mb = Minibatch(source, 32, random_seed=4, epochs=True)
    for _ in range(3):
        next(mb)
    mb.data.prefetch((np.arange(0, 300, 7), None))            # a read-ahead in flight
    copy = pickle.loads(pickle.dumps(mb))
    assert copy.data is not mb.data and copy.data.cache.capacity == 10**6
    assert len(copy.data.cache) == 0 and copy.data.stats["chunks_read"] == 0
    for _ in range(12):                                       # past the first epoch's end
        np.testing.assert_array_equal(next(copy), next(mb))
    if kind == "h5":
        f.close()                                             # the copy has a file of its own
        mem = Minibatch(data, 32, random_seed=4, epochs=True)
        np.testing.assert_array_equal(copy.draw(20), mem.draw(20))
        copy.data.close()
        assert copy.data.closed and copy.data._file is None


def test_h5_source_of_a_file_held_in_memory_refuses_to_pickle():
    import pickle
    f = h5py.File("in-memory.h5", "w", driver="core", backing_store=False)
    src = H5Source(f.create_dataset("x", data=np.zeros((10, 2)), chunks=(5, 2)))
    with pytest.raises(pickle.PicklingError, match="in-memory.h5:/x.*driver='core'"):
        pickle.dumps(src)
    f.close()


# ---------------------------------------------------------------- examples

def doc_section(title):
    """The text of the section of docs/sources.md whose heading starts with
    ``title`` (up to the next heading of its level)."""
    from pathlib import Path
    text = (Path(__file__).resolve().parent.parent / "docs" / "sources.md").read_text()
    part = text.split("\n## " + title, 1)[1]
    return part.split("\n## ", 1)[0]


def run_doctest(text, name, globs=None):
    import doctest
    test = doctest.DocTestParser().get_doctest(text, dict(globs or {}), name, name, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert test.examples and runner.failures == 0, f"{runner.failures} failures in {name}"


def test_docs_example_of_the_chunked_stores():
    run_doctest(doc_section("Chunked stores"), "docs/sources.md: Chunked stores")


@pytest.mark.parametrize("cls", [ZarrSource, H5Source])
def test_docstring_examples(cls, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_doctest(cls.__doc__, cls.__name__)


def test_read_ahead_stops_at_half_the_cache(make, data):
    rows = np.arange(0, 503, 50)                              # 11 chunk rows of axis 0
    full = make(data)
    full.prefetch((rows, None, None))
    full._wait_readahead()
    chunk = full.grid.chunk_nbytes((0, 0, 0), 8)
    small = make(data, cache_bytes=8 * chunk)                 # room for 4 read ahead
    small.prefetch((rows, None, None))
    small._wait_readahead()
    assert small.stats["bytes_read"] <= 4 * chunk < full.stats["bytes_read"]
    assert small.stats["chunks_read"] > 0
    np.testing.assert_array_equal(gathered(small, (rows, None, None)),
                                  reference(data, (rows, None, None)))


def test_sharded_zarr_arrays_are_read_by_inner_chunk():
    data = np.random.default_rng(12).standard_normal((503, 6))
    z = zarr.create_array(store={}, shape=data.shape, shards=(100, 6), chunks=(20, 6),
                          dtype=data.dtype)
    z[...] = data
    src = ZarrSource(z, cache_bytes=0)
    idx = (np.array([502, 0, 21, 21, 399, 1]), None)
    np.testing.assert_array_equal(gathered(src, idx), data[idx[0]])
    assert src.stats["chunks_read"] == 4                    # inner chunks 25, 0, 1, 19
    assert src.stats["bytes_read"] == (3 * 20 + 3) * 6 * 8  # the last one clipped to 3 rows


def test_cached_chunks_own_their_memory(data):
    src = make_zarr(data)                                   # one read, split into views
    gathered(src, (np.arange(0, 503, 7), None, None))
    assert len(src.cache) > 1
    assert all(c.base is None for c in src.cache._chunks.values())
    assert src.cache.nbytes == sum(c.nbytes for c in src.cache._chunks.values())
