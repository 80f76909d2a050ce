"""Speed gates of the row sources (``pytest -s benchmarks/test_source_gates.py``).

dask    ``DaskSource.gather`` of a batch of a persisted array at least 3x
        ``x[np.sort(idx)].compute()`` of a batch of the same size, on the same
        ``LocalCluster`` (two worker processes of one thread, Dask's default
        configuration), batch sizes 128, 1024 and 8192.
zarr    a ``ZarrSource`` gather with its cache warm at least 10x
        ``z.oindex[np.sort(idx)]``, batch of 1024 (an epoch loop over an
        array smaller than the cache).

Each side draws its own batches from a cycle of index sets, measured
interleaved in shuffled rounds (``cases.assert_goal``); the gate asserts the
goal over ``cases.MARGIN`` for the noise of a shared machine and prints the
ratio with the machine.
"""
import numpy as np
import pytest

pytest.importorskip("zarr")
pytest.importorskip("dask.distributed")

from bench_sources import (BATCHES, CHUNK_ROWS, dask_impls, make_zarr,  # noqa: E402
                           persisted_dask_array, store_impls)
from cases import assert_goal  # noqa: E402

DASK_GOAL = 3.0
CACHED_GOAL = 10.0


@pytest.fixture(scope="module")
def cluster_array():
    from dask.distributed import Client, LocalCluster
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                      dashboard_address=None) as cluster, Client(cluster):
        yield persisted_dask_array()


@pytest.mark.parametrize("b", BATCHES)
def test_dask_gather_gate(cluster_array, b):
    assert_goal(f"dask gather b={b} (persisted, LocalCluster 2 processes)",
                dask_impls(cluster_array, b), "anchor", DASK_GOAL,
                names=("DaskSource.gather", "x[np.sort(idx)].compute()"))


def test_zarr_cached_gather_gate(tmp_path):
    data = np.random.default_rng(0).random((50 * CHUNK_ROWS, 32))
    z = make_zarr(tmp_path / "x.zarr", data)
    impls, sources = store_impls("zarr", z, 1024)
    impls = {"ours": impls["cached"], "anchor": impls["anchor"]}
    try:
        assert_goal("zarr gather b=1024, cache warm", impls, "anchor", CACHED_GOAL,
                    names=("ZarrSource.gather", "z.oindex[np.sort(idx)]"))
    finally:
        for src in sources:
            src.close()
