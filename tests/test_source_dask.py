"""A Dask array as a row source (mbcore._source_dask): a gather equals NumPy's
outer indexing of the same data, runs one task per touched chunk, and on a
real two-process cluster takes each chunk's rows on the worker holding the
chunk (no chunk is copied to another worker)."""
import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("dask.distributed")
dask = pytest.importorskip("dask")

from mbcore._source_dask import DaskSource  # noqa: E402

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


def cases():
    rng = np.random.default_rng(1)
    r = lambda n, b: rng.integers(0, n, b)  # noqa: E731
    return {
        "rows": (r(503, 64), None, None),
        "rows-repeated-unsorted": (np.array([502, 0, 77, 502, 3, 0, 450]), None, None),
        "two-axes": (r(503, 10), r(7, 5), None),
        "inner-axes": (None, r(7, 5), r(11, 9)),
        "all-axes-repeats": (np.array([5, 5, 499]), np.array([6, 0, 6]), np.array([10, 10])),
        "empty": (np.array([], np.int64), None, None),
    }


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(11).standard_normal(SHAPE)


@pytest.fixture(scope="module")
def client():
    """A real cluster: two worker processes of one thread each.  Work
    stealing is off: the scheduler then runs each task where its chunk
    lives, which is what the gather's graph asks for; with stealing on, a
    loaded machine lets an idle worker take a task and copy its chunk."""
    with dask.config.set({"distributed.scheduler.work-stealing": False}):
        with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                      dashboard_address=None) as cluster:
            with distributed.Client(cluster) as c:
                yield c


class Recording:
    """A synchronous ``get`` that remembers the tasks of each graph it ran
    that gathers a batch."""

    def __init__(self):
        self.tasks = []

    def __call__(self, graph, keys, **kw):
        import dask
        self.tasks.append(len(keys))
        return dask.get(graph, keys, **kw)


@pytest.mark.parametrize("case", list(cases()))
def test_gather_equals_numpy_outer_indexing(data, case):
    indices = cases()[case]
    src = DaskSource(da.from_array(data, chunks=CHUNKS), scheduler="sync")
    np.testing.assert_array_equal(gathered(src, indices), reference(data, indices))


def test_one_task_per_touched_chunk(data):
    get = Recording()
    src = DaskSource(da.from_array(data, chunks=CHUNKS), scheduler=get)
    rows = np.array([0, 49, 1, 50, 499, 0, 502])             # chunks 0, 1, 9, 10 of axis 0
    cols = np.array([6, 0, 1])                               # chunks 0, 2 of axis 1
    np.testing.assert_array_equal(gathered(src, (rows, cols, None)),
                                  reference(data, (rows, cols, None)))
    assert get.tasks == [4 * 2 * 3]                          # axis 2 whole: 3 chunks


def test_irregular_chunks_and_casts(data):
    x = da.from_array(data, chunks=((100, 3, 400), (2, 5), 11))
    src = DaskSource(x, dtype=np.float32, scheduler="sync")
    idx = (np.array([102, 99, 103, 0, 502]), np.array([1, 2, 6]), None)
    assert src.dtype == np.float32
    np.testing.assert_array_equal(gathered(src, idx), reference(data, idx).astype(np.float32))
    with pytest.raises(TypeError, match=r"float64.*int8.*casting='same_kind'"):
        DaskSource(x, dtype=np.int8)


def test_unknown_chunk_sizes_are_refused():
    x = da.arange(20, chunks=5)
    y = x[x > 3]                                            # chunk sizes unknown
    with pytest.raises(ValueError, match=r"unknown size on axis 0.*compute_chunk_sizes"):
        DaskSource(y)
    src = DaskSource(y.compute_chunk_sizes(), scheduler="sync")
    np.testing.assert_array_equal(gathered(src, (np.array([0, 15, 2]),)), [4, 19, 6])


def test_wrong_input_is_refused(data):
    with pytest.raises(TypeError, match="array must be a dask.array.Array, got ndarray"):
        DaskSource(data)
    with pytest.raises(ValueError, match="at least one axis"):
        DaskSource(da.from_array(np.float64(1.0)))
    src = DaskSource(da.from_array(data, chunks=CHUNKS), scheduler="sync")
    with pytest.raises(IndexError, match=r"indices\[0\] holds 503"):
        gathered(src, (np.array([503]), None, None))
    with pytest.raises(ValueError, match=r"out must be .* shape \(1, 7, 11\)"):
        src.gather((np.array([0]), None, None), np.empty((2, 7, 11)))


@pytest.mark.parametrize("case", list(cases()))
def test_cluster_gather_equals_numpy(client, data, case):
    x = da.from_array(data, chunks=CHUNKS).persist()
    distributed.wait(x)
    indices = cases()[case]
    np.testing.assert_array_equal(gathered(DaskSource(x), indices), reference(data, indices))


def test_cluster_takes_rows_where_the_chunks_live(client, data):
    x = da.from_array(data, chunks=CHUNKS).persist()
    distributed.wait(x)
    client.rebalance(x)                                     # chunks on both workers
    placed = client.who_has(x)
    assert len({w for ws in placed.values() for w in ws}) == 2   # both workers hold chunks
    assert all(len(ws) == 1 for ws in placed.values())
    src = DaskSource(x)
    rng = np.random.default_rng(4)
    for _ in range(5):
        idx = (rng.integers(0, 503, 64), None, rng.integers(0, 11, 4))
        np.testing.assert_array_equal(gathered(src, idx), reference(data, idx))
    now = client.who_has(x)
    # No chunk left the worker it was placed on (the gather reads chunks where
    # they are; Dask's scheduler may still copy a small chunk to an idle worker).
    assert all(set(placed[k]) <= set(now[k]) for k in placed)


def test_cluster_computes_chunks_of_an_array_not_persisted(client, data):
    x = da.from_array(data, chunks=CHUNKS) * 2
    idx = (np.array([500, 3, 3]), np.array([1]), None)
    np.testing.assert_array_equal(gathered(DaskSource(x), idx), 2 * reference(data, idx))


def test_cluster_prefetch_submits_the_next_batch_and_gather_collects_it(client, data):
    x = da.from_array(data, chunks=CHUNKS).persist()
    distributed.wait(x)
    src = DaskSource(x)
    rng = np.random.default_rng(5)
    batches = [(rng.integers(0, 503, 32), None, rng.integers(0, 11, 3)) for _ in range(4)]

    def no_scheduler():
        raise AssertionError("a prefetched batch ran its graph again")

    for idx in batches:
        src.prefetch(idx)
        assert len(src._ahead[2]) > 0                          # its tasks are submitted
        src._get = no_scheduler
        np.testing.assert_array_equal(gathered(src, idx), reference(data, idx))
        del src._get
    src.prefetch(batches[0])
    other = (np.array([1, 2]), None, None)                     # not the prefetched batch
    np.testing.assert_array_equal(gathered(src, other), reference(data, other))
    assert src._ahead is None
    src.prefetch(batches[1])
    src.close()
    assert src._ahead is None


def test_prefetch_is_a_no_op_without_a_client(data):
    src = DaskSource(da.from_array(data, chunks=CHUNKS), scheduler="sync")
    src.prefetch((np.array([1]), None, None))
    assert src._ahead is None


# ---------------------------------------------------------------- Minibatch

MODES = [dict(), dict(epochs=True), dict(epochs=True, epoch_end="short")]
MODE_IDS = ["replace", "epochs-wrap", "epochs-short"]


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_minibatch_over_a_persisted_array_equals_minibatch_over_the_array(client, data, mode):
    from mbcore import Minibatch
    x = da.from_array(data, chunks=CHUNKS).persist()
    mem = Minibatch(data, 64, random_seed=4, **mode)
    mb = Minibatch(x, 64, random_seed=4, **mode)
    assert isinstance(mb.data, DaskSource)
    for _ in range(10):                                     # over an epoch of 503 rows
        np.testing.assert_array_equal(next(mb), next(mem))


def test_minibatch_shards_over_a_cluster(client, data):
    from mbcore import Minibatch
    x = da.from_array(data, chunks=CHUNKS).persist()
    mem = Minibatch(data, [16, 4], random_seed=9, epochs=True)
    shards = [Minibatch(x, [16, 4], random_seed=9, epochs=True, shard=(r, 2)) for r in range(2)]
    for _ in range(4):
        parts = [next(s) for s in shards]
        assert all(p.shape == (8, 4, 11) for p in parts)
        np.testing.assert_array_equal(np.concatenate(parts), next(mem))


def test_docs_example_and_docstring_example():
    import doctest
    from pathlib import Path
    text = (Path(__file__).resolve().parent.parent / "docs" / "sources.md").read_text()
    setup = text.split("\n## Chunked stores", 1)[1].split("```pycon", 1)[1].split("```")[0]
    dask_part = text.split("\n## Dask arrays", 1)[1].split("\n## ", 1)[0]
    for name, example in [("docs/sources.md: Dask arrays", setup + dask_part),
                          ("DaskSource", DaskSource.__doc__)]:
        test = doctest.DocTestParser().get_doctest(example, {}, name, name, 0)
        runner = doctest.DocTestRunner()
        runner.run(test)
        assert test.examples and runner.failures == 0, f"{runner.failures} failures in {name}"
