"""Row sources against their anchors: time per batch and I/O amplification.

    .venv/bin/python benchmarks/bench_sources.py [--quick]

Each table times one batch of ``b`` random rows (drawn afresh for every
call, from a cycle of index sets), interleaved with its anchor
(``timing.interleaved_min``), and prints the bytes read from the store per
byte returned.

zarr    ``ZarrSource.gather`` against ``z.oindex[np.sort(idx)]``, on a Zarr v3
        array on local disk (zstd, the default codec): with no cache (each
        batch reads its chunks) and with the default 256 MiB cache warm (the
        array fits: an epoch loop over a dataset smaller than the cache)
hdf5    ``H5Source.gather`` against ``d[np.unique(idx)][inverse]`` (h5py
        needs increasing positions without repeats) on a chunked dataset,
        uncompressed and gzip (level 4), the same two ways
read-ahead  a loop that gathers a batch, prefetches the next and works
        50 ms (sleeping: work that releases the GIL, as a model step
        does), with and without read-ahead, on a 205 MB array and a 64 MiB
        cache
dask    ``DaskSource.gather`` against ``x[np.sort(idx)].compute()`` on a
        persisted array of a ``LocalCluster`` of two worker processes
        (Dask's default configuration: work stealing on), with the tasks
        a batch runs and the chunks workers received during 20 batches
        gathered alone

The amplification counts decoded chunk bytes: the anchors decode the same
chunks as a source without a cache (each touched chunk once per call),
except HDF5 on uncompressed chunks, which reads only the selected rows;
a warm cache reads none.
"""
import argparse
import itertools
import pathlib
import sys
import tempfile

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from timing import interleaved_min  # noqa: E402

SHAPE = (200_000, 32)        # float64: 51 MB
CHUNK_ROWS = 1000            # 256 KB chunks
BATCHES = (128, 1024, 8192)
DASK_SHAPE = (1_000_000, 16)  # float64: 128 MB on two workers
DASK_CHUNK_ROWS = 10_000     # 1.3 MB chunks


def index_sets(n, b, seed, count=16):
    rng = np.random.default_rng(seed)
    return itertools.cycle([rng.integers(0, n, b) for _ in range(count)])


def touched_bytes(idx, chunk_rows, row_bytes, n):
    """Decoded bytes of the chunks a batch touches (rows split in chunks of
    ``chunk_rows``, whole along the other axes)."""
    chunks = np.unique(idx // chunk_rows)
    last = (n - 1) // chunk_rows
    rows = len(chunks) * chunk_rows - (chunk_rows - (n - last * chunk_rows)) * (last in chunks)
    return int(rows) * row_bytes


def make_zarr(path, data, chunk_rows=CHUNK_ROWS):
    import zarr
    z = zarr.create_array(store=str(path), shape=data.shape, chunks=(chunk_rows,) + data.shape[1:],
                          dtype=data.dtype)
    z[...] = data
    return zarr.open_array(str(path), mode="r")


def make_h5(path, data, chunk_rows=CHUNK_ROWS, **kw):
    import h5py
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=data, chunks=(chunk_rows,) + data.shape[1:], **kw)
    return h5py.File(path, "r")["x"]


def store_impls(kind, store, b, seed=0):
    """{"ours": cold ZarrSource/H5Source gather, "cached": one with a warm
    cache, "anchor": the store's own indexing} for batches of ``b`` rows."""
    from mbcore._source_h5py import H5Source
    from mbcore._source_zarr import ZarrSource
    make = ZarrSource if kind == "zarr" else H5Source
    n, w = store.shape
    cold, warm = make(store, cache_bytes=0), make(store)
    out_cold, out_warm = np.empty((b, w)), np.empty((b, w))
    sets = {k: index_sets(n, b, seed + i) for i, k in enumerate(("ours", "cached", "anchor"))}
    warm.gather((np.arange(n), None), np.empty((n, w)))             # every chunk in the cache

    if kind == "zarr":
        def anchor():
            return store.oindex[np.sort(next(sets["anchor"]))]
    else:
        def anchor():
            uniq, inverse = np.unique(next(sets["anchor"]), return_inverse=True)
            return store[uniq][inverse]
    return {
        "ours": lambda: cold.gather((next(sets["ours"]), None), out_cold),
        "cached": lambda: warm.gather((next(sets["cached"]), None), out_warm),
        "anchor": anchor,
    }, (cold, warm)


def dask_impls(x, b, seed=0):
    """{"ours": DaskSource(x).gather, "anchor": x[np.sort(idx)].compute()}."""
    from mbcore._source_dask import DaskSource
    src = DaskSource(x)
    out = np.empty((b,) + x.shape[1:], x.dtype)
    ours_sets, anchor_sets = index_sets(x.shape[0], b, seed), index_sets(x.shape[0], b, seed + 1)
    return {
        "ours": lambda: src.gather((next(ours_sets), None), out),
        "anchor": lambda: x[np.sort(next(anchor_sets))].compute(),
    }


def dask_copies(x, b, batches=20, seed=2):
    """(pinned tasks a batch, chunks missed, chunks the workers received) over
    ``batches`` gathers of ``b`` rows by one ``DaskSource``, run alone."""
    from dask.distributed import get_client
    from mbcore._source_dask import DaskSource
    client = get_client()

    def received():
        counts = client.run(lambda dask_worker: dask_worker.state.transfer_incoming_count_total)
        return sum(counts.values())

    src = DaskSource(x)
    out = np.empty((b,) + x.shape[1:], x.dtype)
    sets = index_sets(x.shape[0], b, seed)
    src.gather((next(sets), None), out)                  # the holders asked once
    before, stats = received(), dict(src.stats)
    for _ in range(batches):
        src.gather((next(sets), None), out)
    return ((src.stats["pinned_tasks"] - stats["pinned_tasks"]) / batches,
            src.stats["missed"] - stats["missed"], received() - before)


def persisted_dask_array(shape=DASK_SHAPE, chunk_rows=DASK_CHUNK_ROWS):
    import dask.array as da
    from dask.distributed import wait
    x = da.random.default_rng(0).random(shape, chunks=(chunk_rows,) + shape[1:]).persist()
    wait(x)
    return x


def run_stores(rounds, batches):
    data = np.random.default_rng(0).random(SHAPE)
    row_bytes = data.itemsize * SHAPE[1]
    with tempfile.TemporaryDirectory() as tmp:
        stores = {"zarr": make_zarr(pathlib.Path(tmp) / "x.zarr", data),
                  "hdf5": make_h5(pathlib.Path(tmp) / "x.h5", data),
                  "hdf5 gzip": make_h5(pathlib.Path(tmp) / "z.h5", data, compression="gzip")}
        print(f"\n{SHAPE[0]} x {SHAPE[1]} float64, chunks of {CHUNK_ROWS} rows "
              f"({CHUNK_ROWS * row_bytes // 1024} KiB), local disk")
        print("| store | b | anchor (ms) | no cache (ms) | ratio | cache warm (ms) | ratio "
              "| amplification (no cache) |")
        print("|---|---|---|---|---|---|---|---|")
        for kind, store in stores.items():
            for b in batches:
                impls, (cold, warm) = store_impls(kind, store, b)
                cold.reset_stats()
                t = interleaved_min(impls, rounds=rounds, calls=3)
                amp = cold.amplification
                idx = np.random.default_rng(9).integers(0, SHAPE[0], b)
                anchor_amp = touched_bytes(idx, CHUNK_ROWS, row_bytes, SHAPE[0]) / (b * row_bytes)
                print(f"| {kind} | {b} | {t['anchor'] * 1e3:.2f} | {t['ours'] * 1e3:.2f} | "
                      f"{t['anchor'] / t['ours']:.2f}x | {t['cached'] * 1e3:.3f} | "
                      f"{t['anchor'] / t['cached']:.0f}x | {amp:.1f} (anchor {anchor_amp:.1f}) |")
                cold.close()
                warm.close()
        stores["hdf5"].file.close()
        stores["hdf5 gzip"].file.close()


def readahead_step(src, sets, out, work):
    """One training step as ``Minibatch`` runs it: gather this batch, prefetch
    the next, then ``work`` seconds of other work that releases the GIL (a
    model step)."""
    import time
    idx, following = sets
    src.gather((idx, None), out)
    src.prefetch((following, None))
    time.sleep(work)


def run_readahead(rounds, b=128, work=0.05, cache_bytes=64 * 2**20):
    """Steps of a loop that works ``work`` s between batches, with and
    without read-ahead, over stores larger than the cache's share of them."""
    import time
    from mbcore._source_h5py import H5Source
    from mbcore._source_zarr import ZarrSource
    data = np.random.default_rng(1).random((4 * SHAPE[0], SHAPE[1]))     # 205 MB
    with tempfile.TemporaryDirectory() as tmp:
        stores = {"zarr": (ZarrSource, make_zarr(pathlib.Path(tmp) / "x.zarr", data)),
                  "hdf5 gzip": (H5Source, make_h5(pathlib.Path(tmp) / "z.h5", data,
                                                  compression="gzip"))}
        print(f"\nread-ahead: {data.shape[0]} x {data.shape[1]} float64 ({data.nbytes >> 20} MiB), "
              f"b={b}, {work * 1e3:.0f} ms of work between batches, cache {cache_bytes >> 20} MiB")
        print("| store | step, read-ahead (ms) | step, none (ms) | work alone (ms) |")
        print("|---|---|---|---|")
        for kind, (make, store) in stores.items():
            best = {}
            for ahead in (True, False) * rounds:
                src = make(store, cache_bytes=cache_bytes, readahead=ahead)
                sets = [np.random.default_rng(k).integers(0, data.shape[0], b) for k in range(9)]
                out = np.empty((b, data.shape[1]))
                src.prefetch((sets[0], None))
                t = time.perf_counter()
                for k in range(8):
                    readahead_step(src, (sets[k], sets[k + 1]), out, work)
                dt = (time.perf_counter() - t) / 8
                best[ahead] = min(best.get(ahead, dt), dt)
                src.close()
            print(f"| {kind} | {best[True] * 1e3:.1f} | {best[False] * 1e3:.1f} | "
                  f"{work * 1e3:.0f} |")
        stores["hdf5 gzip"][1].file.close()


def run_dask(rounds, batches):
    from dask.distributed import Client, LocalCluster
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                      dashboard_address=None) as cluster, Client(cluster):
        x = persisted_dask_array()
        print(f"\ndask: {DASK_SHAPE[0]} x {DASK_SHAPE[1]} float64 persisted, chunks of "
              f"{DASK_CHUNK_ROWS} rows, LocalCluster(n_workers=2, processes=True, "
              f"threads_per_worker=1)")
        print("| b | x[np.sort(idx)].compute() (ms) | DaskSource.gather (ms) | ratio "
              "| tasks a batch | chunks received by workers in 20 batches |")
        print("|---|---|---|---|---|---|")
        for b in batches:
            t = interleaved_min(dask_impls(x, b), rounds=rounds, calls=3)
            tasks, _, received = dask_copies(x, b)
            print(f"| {b} | {t['anchor'] * 1e3:.1f} | {t['ours'] * 1e3:.2f} | "
                  f"{t['anchor'] / t['ours']:.2f}x | {tasks:.1f} | {received} |")


def main(argv=None):
    from machine import cpu_model, usable_cpus
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="3 rounds instead of 7")
    p.add_argument("--only", choices=["stores", "readahead", "dask"])
    args = p.parse_args(argv)
    rounds = 3 if args.quick else 7
    print(f"{cpu_model()}, {usable_cpus()} CPUs")
    if args.only in (None, "stores"):
        run_stores(rounds, BATCHES)
    if args.only in (None, "readahead"):
        run_readahead(rounds)
    if args.only in (None, "dask"):
        run_dask(rounds, BATCHES)


if __name__ == "__main__":
    main()
