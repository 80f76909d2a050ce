"""Speed gate of memory-mapped files (``make gates``): random batches from a
file on a cold page cache at least 3x faster than a plain ``memmap[idx]``
gather with NumPy-drawn indices, at the same batch sizes.

The file (``GIB`` GiB, in ``MBCORE_BENCH_DIR`` or the temporary folder) has
its pages dropped from the page cache before every round
(``bench_memmap.cold_ratio``), so each round reads from the device, as a
file larger than the page cache would; both sides alternate in shuffled
rounds, each keeping its best.  The ratio is printed (``pytest -s``).  A
folder whose pages cannot be dropped (tmpfs: the file lives in memory)
skips the gate.
"""
import os
import shutil
import tempfile

import pytest

import bench_memmap

NEED = 3.0       # memmap[idx] time / mbcore time, at least
GIB = float(os.environ.get("MBCORE_MEMMAP_GIB", "2"))
CASES = [(width, b) for width in bench_memmap.WIDTHS for b in bench_memmap.BATCHES]


@pytest.fixture(scope="module")
def cold_file():
    folder = tempfile.mkdtemp(dir=os.environ.get("MBCORE_BENCH_DIR"))
    try:
        path = bench_memmap.make_file(os.path.join(folder, "rows.npy"), GIB)
        bench_memmap.drop(path)
        cached = bench_memmap.cached_fraction(path)
        if cached > 0.05:
            pytest.skip(f"{folder}: {cached:.0%} of the file stays cached after "
                        f"POSIX_FADV_DONTNEED (a memory file system?); set MBCORE_BENCH_DIR "
                        f"to a folder on a disk")
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("width,b", CASES, ids=[f"row{w}B-b{b}" for w, b in CASES])
def test_cold_memmap_gate(cold_file, width, b):
    ratio, t = bench_memmap.cold_ratio(cold_file, width, b)
    print(f"rows of {width} B, batch {b}: mbcore {ratio:.1f}x memmap[idx] on a cold "
          f"{GIB:g} GiB file ({t['mbcore'] * 1e3:.2f} / {t['memmap[idx]'] * 1e3:.2f} ms a "
          f"batch); goal (>= {NEED}x) {'met' if ratio >= NEED else 'NOT met'}")
    assert ratio >= NEED, f"mbcore {ratio:.2f}x memmap[idx] < {NEED}x ({t})"
