"""A Dask array as a row source (mbcore._source_dask): a gather equals NumPy's
outer indexing of the same data; on a local scheduler it runs one task per
touched chunk; on a real two-process cluster with Dask's default
configuration (work stealing on) it runs one task per worker holding touched
chunks, on that worker, copies no chunk between workers, and survives a
worker leaving between batches."""
import os
import signal
import time

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
    """A real cluster: two worker processes of one thread each, with Dask's
    default configuration (work stealing on)."""
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as c:
            assert c.run_on_scheduler(lambda dask_scheduler: "stealing" in
                                      dask_scheduler.extensions)
            yield c


def transfers(client):
    """Chunks each worker has received from other workers so far."""
    return client.run(lambda dask_worker: dask_worker.state.transfer_incoming_count_total)


def spread(client, data):
    """``data`` persisted with chunks on both workers, one copy of each (under
    a name of its own: not the chunks an earlier test placed)."""
    x = da.from_array(data, chunks=CHUNKS, name=False).persist()
    distributed.wait(x)
    client.rebalance(x)
    placed = client.who_has(x)
    assert len({w for ws in placed.values() for w in ws}) == 2
    assert all(len(ws) == 1 for ws in placed.values())
    return x, placed


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


def test_cluster_gather_of_whole_rows(client, data):
    """Rows of a 2-d array in one chunk along axis 1: each worker's blocks come
    back stacked in one array and are split into their places."""
    flat = data.reshape(SHAPE[0], -1)
    x = da.from_array(flat, chunks=(50, flat.shape[1]), name=False).persist()
    src = DaskSource(x)
    for idx in [np.array([502, 0, 77, 502, 3, 0, 450, 51, 49]),
                np.random.default_rng(3).integers(0, 503, 200), np.array([7])]:
        np.testing.assert_array_equal(gathered(src, (idx, None)), flat[idx])
    assert src.stats["chunk_tasks"] == 0


def test_cluster_copies_no_chunk_with_work_stealing_on(client, data):
    """One worker is kept busy with a sleeping task while batches are
    gathered, work stealing on: each batch runs one task per holding worker,
    pinned there (its task waits for the busy worker rather than move), the
    tasks read the chunks from their worker's memory, and no worker receives
    any data."""
    x, placed = spread(client, data)
    src = DaskSource(x)
    rng = np.random.default_rng(4)
    busy = sorted({w for ws in placed.values() for w in ws})[0]
    before = transfers(client)
    for _ in range(6):
        sleeper = client.submit(time.sleep, 0.3, workers=[busy], pure=False)
        idx = (rng.integers(0, 503, 64), None, rng.integers(0, 11, 4))
        pinned = src.stats["pinned_tasks"]
        np.testing.assert_array_equal(gathered(src, idx), reference(data, idx))
        holders = {placed[src._keys[k, 0, 0]][0] for k in np.unique(idx[0] // CHUNKS[0])}
        assert src.stats["pinned_tasks"] - pinned == len(holders)   # one task a holder
        sleeper.result()
    assert transfers(client) == before
    assert client.who_has(x) == placed
    assert src.stats["missed"] == 0 and src.stats["chunk_tasks"] == 0


def test_cluster_looks_a_moved_chunk_up_again(client, data):
    """Holders cached wrongly (as after a chunk moved): each pinned task finds
    none of its chunks, the gather asks the scheduler again and takes them
    from their holders in a second round, still copying none."""
    x, placed = spread(client, data)
    src = DaskSource(x)
    idx = (np.arange(0, 503, 7), None, None)
    np.testing.assert_array_equal(gathered(src, idx), reference(data, idx))
    workers = sorted({w for ws in placed.values() for w in ws})
    swap = dict(zip(workers, workers[::-1]))
    src._holder = {k: swap[w] for k, w in src._holder.items()}
    before = transfers(client)
    np.testing.assert_array_equal(gathered(src, idx), reference(data, idx))
    assert transfers(client) == before
    assert src.stats["missed"] == len(np.unique(idx[0] // CHUNKS[0])) * 3 * 3   # every chunk
    assert src.stats["rounds"] == 1 and src.stats["chunk_tasks"] == 0


def test_cluster_computes_chunks_of_an_array_not_persisted(client, data):
    x = da.from_array(data, chunks=CHUNKS) * 2
    idx = (np.array([500, 3, 3]), np.array([1]), None)
    src = DaskSource(x)
    np.testing.assert_array_equal(gathered(src, idx), 2 * reference(data, idx))
    assert src.stats["pinned_tasks"] == 0 and src.stats["chunk_tasks"] == 2 * 3


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
        src._get = src._submit = no_scheduler
        np.testing.assert_array_equal(gathered(src, idx), reference(data, idx))
        del src._get, src._submit
    src.prefetch(batches[0])
    other = (np.array([1, 2]), None, None)                     # not the prefetched batch
    np.testing.assert_array_equal(gathered(src, other), reference(data, other))
    assert src._ahead is None
    src.prefetch(batches[1])
    src.close()
    assert src._ahead is None


def test_cluster_lets_the_futures_of_gathered_batches_go_in_bulk(client, data):
    from mbcore._source_dask import RELEASE_BATCHES
    x = da.from_array(data, chunks=CHUNKS, name=False).persist()
    src = DaskSource(x)
    rng = np.random.default_rng(6)
    held = []
    for _ in range(RELEASE_BATCHES + 2):
        gathered(src, (rng.integers(0, 503, 8), None, None))
        held.append(len(src._done))
    assert max(held) == RELEASE_BATCHES and held[-1] < RELEASE_BATCHES
    src.close()
    assert src._done == []


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


# ---------------------------------------------------------- workers leaving
# (last: they change the cluster, and give it back its two workers)

def two_workers(client):
    client.cluster.scale(2)
    client.wait_for_workers(2, timeout=60)


def test_cluster_worker_leaving_between_batches(client, data):
    """A worker leaves (``LocalCluster.scale(1)``) between batches, and
    another with a batch prefetched: the batches come out whole and equal,
    within seconds.  The tasks pinned to the worker that left are noticed
    (a round more), and its chunks are read where they are now, or
    computed again by the scheduler where the cluster lost them."""
    x, placed = spread(client, data)
    src = DaskSource(x)
    rng = np.random.default_rng(8)
    batches = [(rng.integers(0, 503, 64), None, None) for _ in range(6)]
    try:
        np.testing.assert_array_equal(gathered(src, batches[0]), reference(data, batches[0]))
        client.cluster.scale(1)                                 # retires one worker
        deadline = time.monotonic() + 30
        while len(client.nthreads()) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        t = time.monotonic()
        for idx in batches[1:3]:
            np.testing.assert_array_equal(gathered(src, idx), reference(data, idx))
        assert time.monotonic() - t < 10
        two_workers(client)
        src.prefetch(batches[3])                                # pinned, then a worker goes
        client.cluster.scale(1)
        np.testing.assert_array_equal(gathered(src, batches[3]), reference(data, batches[3]))
        for idx in batches[4:]:
            np.testing.assert_array_equal(gathered(src, idx), reference(data, idx))
        assert src.stats["rounds"] >= 1                          # the worker gone noticed
    finally:
        two_workers(client)


def test_cluster_worker_killed_between_batches(client, data):
    """A worker process is killed: its chunks are lost and recomputed by the
    scheduler from the array's graph; the next batches still equal NumPy's."""
    x, placed = spread(client, data)
    src = DaskSource(x)
    rng = np.random.default_rng(9)
    try:
        idx = (rng.integers(0, 503, 64), None, None)
        np.testing.assert_array_equal(gathered(src, idx), reference(data, idx))
        victim = sorted({w for ws in placed.values() for w in ws})[0]
        pid = client.run(os.getpid, workers=[victim])[victim]
        os.kill(pid, signal.SIGKILL)
        t = time.monotonic()
        for _ in range(3):
            idx = (rng.integers(0, 503, 64), None, None)
            np.testing.assert_array_equal(gathered(src, idx), reference(data, idx))
        assert time.monotonic() - t < 30
    finally:
        two_workers(client)


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
