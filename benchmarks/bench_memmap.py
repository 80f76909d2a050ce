"""Random batches from a memory-mapped file on a cold page cache: mbcore
against a plain ``memmap[idx]`` gather with NumPy-drawn indices.

A round opens the file afresh (a new ``np.memmap``, a new ``Minibatch``),
draws ``ROWS`` rows in batches of ``b``, and closes it; before each round
the file's pages are dropped from the page cache
(``posix_fadvise(POSIX_FADV_DONTNEED)``, which needs no privileges for clean,
unmapped pages), so every round reads from the device, as a file larger than
the page cache would.  The two sides alternate in shuffled order, each with
its own seed; each keeps its best round.  A ``warm`` table times the same
batches on the file's first 64 MiB, cached and mapped, against
``memmap[idx]`` and against those rows loaded into memory.

``python benchmarks/bench_memmap.py [--gib 2] [--dir DIR]`` prints both
tables in markdown (docs/sources.md holds one run); ``test_memmap_gates.py``
gates on ``cold_ratio``.
"""
import argparse
import ctypes
import gc
import mmap
import os
import random
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mbcore import Minibatch  # noqa: E402

ROWS = 1024            # rows a cold round draws
BATCHES = (64, 1024)
WIDTHS = (64, 1024, 16384)       # bytes a row


def make_file(path, gib):
    """A .npy file of ``gib`` GiB of float64 rows of 8 values (written once,
    synced, so that its pages are clean); the path."""
    n = int(gib * 2 ** 30) // 64
    if os.path.exists(path) and os.path.getsize(path) >= n * 64:
        return path
    out = np.lib.format.open_memmap(path, "w+", np.float64, (n, 8))
    chunk = 1 << 20
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        out[s:e] = np.arange(s * 8, e * 8, dtype=np.float64).reshape(-1, 8)
    out.flush()
    del out
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    return path


def drop(path):
    """Drop ``path``'s pages from the page cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def cached_fraction(path, pages=256):
    """The fraction of ``pages`` pages spread over ``path`` in the page cache
    (mincore on a fresh mapping)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    view = np.frombuffer(m, np.uint8)
    base = view.ctypes.data
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
    vec = ctypes.c_ubyte(0)
    step = max(mmap.PAGESIZE, size // pages // mmap.PAGESIZE * mmap.PAGESIZE)
    hits = total = 0
    for off in range(0, size - mmap.PAGESIZE + 1, step):
        libc.mincore(ctypes.c_void_p(base + off), mmap.PAGESIZE, ctypes.byref(vec))
        hits += vec.value & 1
        total += 1
    del view
    m.close()
    return hits / max(total, 1)


def rows_view(arr, width):
    """``arr`` (n, 8) float64 as rows of ``width`` bytes."""
    per = width // 8
    n = arr.shape[0] * 8 // per
    return arr.reshape(-1)[:n * per].reshape(n, per)


def _opener(path, width, nbytes=None):
    """A function that maps ``path`` afresh as rows of ``width`` bytes (the
    first ``nbytes`` bytes' rows when given)."""
    def open_rows():
        rows = rows_view(np.load(path, mmap_mode="r"), width)
        return rows if nbytes is None else rows[:nbytes // width]
    return open_rows


def _baseline(open_rows, b, seed, batches):
    mm = open_rows()
    rng = np.random.default_rng(seed)
    n = mm.shape[0]
    t0 = time.perf_counter()
    for _ in range(batches):
        mm[rng.integers(0, n, b)]
    return time.perf_counter() - t0


def _mbcore(open_rows, b, seed, batches):
    mb = Minibatch(open_rows(), batch_size=b, random_seed=seed)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(mb)
    return time.perf_counter() - t0


IMPLS = {"memmap[idx]": _baseline, "mbcore": _mbcore}


def cold_ratio(path, width, b, rounds=3, rows=ROWS):
    """(memmap[idx] time / mbcore time, {name: best seconds a batch}) on a
    cold page cache, interleaved in shuffled rounds."""
    batches = max(1, rows // b)
    open_rows = _opener(path, width)
    best = {name: float("inf") for name in IMPLS}
    order = list(IMPLS)
    shuffle = random.Random(0).shuffle
    for r in range(rounds):
        shuffle(order)
        for k, name in enumerate(order):
            gc.collect()
            drop(path)
            dt = IMPLS[name](open_rows, b, 1000 * r + 10 * k + 1, batches)
            best[name] = min(best[name], dt / batches)
    return best["memmap[idx]"] / best["mbcore"], best


def warm_times(path, width, b, nbytes=64 << 20):
    """Best seconds a batch on the first ``nbytes`` of the file, cached and
    mapped (every page touched through each side's mapping first):
    memmap[idx], mbcore over the memmap, mbcore over the rows in memory
    (``timing.interleaved_min``)."""
    from timing import interleaved_min
    open_rows = _opener(path, width, nbytes)
    mm = open_rows()
    mem = np.array(mm)
    mb = Minibatch(open_rows(), batch_size=b, random_seed=1)
    np.asarray(mb._sampler.source.view).sum()       # populate mbcore's own mapping
    ref = Minibatch(mem, batch_size=b, random_seed=2)
    rng = np.random.default_rng(3)
    n = mm.shape[0]
    return interleaved_min({"memmap[idx]": lambda: mm[rng.integers(0, n, b)],
                            "mbcore": lambda: next(mb), "in memory": lambda: next(ref)})


def machine():
    import machine as m
    return f"{m.cpu_model()}, {m.usable_cpus()} CPUs, Linux {os.uname().release}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gib", type=float, default=2.0)
    p.add_argument("--dir", default=os.environ.get("MBCORE_BENCH_DIR"))
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    folder = tempfile.mkdtemp(dir=args.dir)
    path = make_file(os.path.join(folder, "rows.npy"), args.gib)
    drop(path)
    print(f"{machine()}; {args.gib:g} GiB file; page cache dropped between rounds "
          f"(cached after a drop: {cached_fraction(path):.0%}); {time.strftime('%Y-%m-%d')}")
    print()
    print("| row bytes | batch | memmap[idx] ms/batch | mbcore ms/batch | ratio |")
    print("|---:|---:|---:|---:|---:|")
    for width in WIDTHS:
        for b in BATCHES:
            ratio, t = cold_ratio(path, width, b, args.rounds)
            print(f"| {width} | {b} | {t['memmap[idx]'] * 1e3:.2f} | {t['mbcore'] * 1e3:.2f} "
                  f"| {ratio:.1f}x |", flush=True)
    print()
    print("| row bytes | batch | memmap[idx] us/batch | mbcore us/batch | in memory us/batch |")
    print("|---:|---:|---:|---:|---:|")
    for width in WIDTHS:
        for b in BATCHES:
            t = warm_times(path, width, b)
            print(f"| {width} | {b} | {t['memmap[idx]'] * 1e6:.1f} | {t['mbcore'] * 1e6:.1f} "
                  f"| {t['in memory'] * 1e6:.1f} |", flush=True)
    os.remove(path)
    os.rmdir(folder)


if __name__ == "__main__":
    main()
