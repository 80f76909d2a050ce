"""pytest-benchmark suite of the core (``make bench``).

Every case times ours, NumPy, the floor and the copies of given rows
(see cases.py) in the same run; report.py turns the JSON into the table and
the plot.  pytest-benchmark times one implementation after the other, so a
slow spell of the shared machine can land on one side only: the test of
``ours`` also measures every implementation of its case interleaved
(``benchmarks/timing.py, interleaved_min``) and records those times, from which the
table's ratios are computed.
"""
import numpy as np
import pytest

from mbcore import Minibatch

from cases import (GRID, MULTI, SCALING, TABLE_ROUNDS, ThreadedFloor, case_id, grid_impls,
                   interleaved_min, make_data, multi_id, multi_impls, thread_counts)


@pytest.mark.parametrize("impl", ["ours", "numpy", "floor", "rows"])
@pytest.mark.parametrize("case", GRID, ids=case_id)
def test_grid(benchmark, case, impl):
    n, w, b = case
    impls = grid_impls(case)
    fn = impls[impl]
    benchmark.group = case_id(case)
    benchmark.extra_info.update(case=case_id(case), impl=impl, n=n, width=w, batch=b,
                                kind="grid")
    if impl == "ours":
        benchmark.extra_info["interleaved"] = interleaved_min(impls, rounds=TABLE_ROUNDS)
    out = benchmark(fn)
    assert out.shape[0] == b


@pytest.mark.parametrize("impl", ["ours", "numpy"])
@pytest.mark.parametrize("shape,spec", MULTI, ids=[multi_id(*m) for m in MULTI])
def test_multi_axis(benchmark, shape, spec, impl):
    impls = multi_impls(shape, spec)
    fn = impls[impl]
    benchmark.group = multi_id(shape, spec)
    benchmark.extra_info.update(case=multi_id(shape, spec), impl=impl, kind="multi")
    if impl == "ours":
        benchmark.extra_info["interleaved"] = interleaved_min(impls, rounds=TABLE_ROUNDS)
    out = benchmark(fn)
    assert out.ndim == len(shape)


@pytest.mark.parametrize("impl", ["ours", "numpy"])
def test_memory(benchmark, impl):
    """Time per batch over a 2 GiB float64 array, with the resident-memory
    growth of drawing 100 such batches (measured in a fresh process) beside it."""
    from test_memory_gate import measure

    n, b = 2**28, 100_000
    growth = measure("core" if impl == "ours" else "numpy", gib=2, batches=100)["growth_mb"]
    data = np.ones(n)
    fn = Minibatch(data, batch_size=b).__next__ if impl == "ours" \
        else (lambda rng=np.random.default_rng(0): np.take(data, rng.integers(0, n, b)))
    case = "2 GiB float64, b=1e5"
    benchmark.group = case
    benchmark.extra_info.update(case=case, impl=impl, kind="memory", n=n, width=1, batch=b,
                                peak_rss_mb=growth)
    assert benchmark(fn).shape == (b,)


def _usable_cpus():
    from machine import usable_cpus
    return usable_cpus()


@pytest.mark.parametrize("impl", ["ours", "floor"])
@pytest.mark.parametrize("threads", thread_counts(_usable_cpus()))
@pytest.mark.parametrize("case", SCALING, ids=case_id)
def test_thread_scaling(benchmark, case, threads, impl):
    """Time per batch on 1 to all usable threads: ours (``set_num_threads``)
    against the contiguous copy of the same bytes on as many threads."""
    import mbcore
    if not hasattr(mbcore, "set_num_threads"):
        pytest.skip("this mbcore has no set_num_threads")
    n, w, b = case
    data = make_data(n, w)
    out = np.empty((b,) + data.shape[1:])
    previous = mbcore.get_num_threads()
    floor = ThreadedFloor(data, out, threads)
    try:
        mbcore.set_num_threads(threads)
        fn = Minibatch(data, batch_size=b, random_seed=0).__next__ if impl == "ours" else floor
        benchmark.group = f"threads {case_id(case)}"
        benchmark.extra_info.update(case=f"{case_id(case)} threads={threads}", impl=impl, n=n,
                                    width=w, batch=b, threads=threads, kind="threads")
        assert benchmark(fn).nbytes == out.nbytes
    finally:
        mbcore.set_num_threads(previous)
        floor.close()
