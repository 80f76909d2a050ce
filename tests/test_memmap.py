"""Memory-mapped arrays: the same batches as in memory, read with random-access
advice on a mapping of mbcore's own, in bounded anonymous memory."""
import ctypes
import mmap
import os
import pickle
import time

import numpy as np
import pytest

from mbcore import MemmapSource, Minibatch, as_source, minibatches
from mbcore import _memmap

PAGE = mmap.PAGESIZE


@pytest.fixture
def stored(tmp_path, rng):
    """(path of a .npy file, its array in memory): 3000 x 5 float64."""
    data = rng.standard_normal((3000, 5))
    path = tmp_path / "stored.npy"
    np.save(path, data)
    return path, data


def views(mm):
    return {"whole": mm, "rows sliced": mm[100:2900:3], "reversed": mm[::-1],
            "columns": mm[:, 1:4], "transposed": mm.T}


@pytest.mark.parametrize("name", ["whole", "rows sliced", "reversed", "columns",
                                  "transposed"])
@pytest.mark.parametrize("spec", [dict(batch_size=16), dict(batch_size=[8, 2]),
                                  dict(batch_size=5, replace=False),
                                  dict(batch_size=4, epochs=True, epoch_end="short")],
                         ids=repr)
def test_batches_equal_the_arrays_in_memory(stored, name, spec):
    path, data = stored
    mm = views(np.load(path, mmap_mode="r"))[name]
    mem = views(data)[name]
    a = Minibatch(mm, random_seed=3, **spec)
    b = Minibatch(mem, random_seed=3, **spec)
    assert a.data is mm
    for _ in range(60):
        x, y = next(a), next(b)
        assert x.shape == y.shape
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.draw(7), b.draw(7))


def test_an_np_memmap_and_a_path_give_the_arrays_batches(tmp_path, stored):
    path, data = stored
    raw = tmp_path / "raw.bin"
    data.astype(np.float32).tofile(raw)
    mm = np.memmap(raw, np.float32, "r", shape=data.shape)
    a = Minibatch(mm, batch_size=32, random_seed=1)
    assert isinstance(a._sampler.source, MemmapSource)
    same = Minibatch(data.astype(np.float32), batch_size=32, random_seed=1)
    for _ in range(5):
        np.testing.assert_array_equal(next(a), next(same))
    by_path = Minibatch(str(path), batch_size=32, random_seed=1)
    mem = Minibatch(data, batch_size=32, random_seed=1)
    for _ in range(5):
        np.testing.assert_array_equal(next(by_path), next(mem))
    assert isinstance(by_path.data, np.memmap)


def test_groups_with_memory_mapped_members_stay_aligned(stored):
    path, data = stored
    y = np.arange(3000.0)
    g = minibatches(str(path), y, batch_size=20, random_seed=2)
    for _ in range(5):
        xb, yb = next(g)
        np.testing.assert_array_equal(xb, data[yb.astype(int)])


def _vmflags(address):
    """The VmFlags of the mapping of this process that holds ``address``."""
    with open("/proc/self/smaps") as f:
        inside = False
        for line in f:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(x, 16) for x in head.split("-"))
                inside = lo <= address < hi
            elif inside and head == "VmFlags:":
                return line.split()[1:]
    return None


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs /proc/self/smaps")
def test_random_access_is_advised_on_its_own_mapping_not_the_callers(stored):
    path, _ = stored
    mm = np.load(path, mmap_mode="r")
    mb = Minibatch(mm, batch_size=8)
    view = mb._sampler.source.view
    assert not np.shares_memory(view, mm)
    # rr: VM_RAND_READ, which MADV_RANDOM sets: faults read no pages around.
    assert "rr" in _vmflags(view.ctypes.data)
    assert "rr" not in _vmflags(mm.ctypes.data)


def test_a_copy_on_write_mapping_is_read_where_its_writes_are(tmp_path, stored):
    path, data = stored
    mm = np.load(path, mmap_mode="c")
    mm[:] = -1.0                     # written only in this process's mapping
    mb = Minibatch(mm, batch_size=8)
    assert (next(mb) == -1.0).all()


def _resident(address, length):
    vec = (ctypes.c_ubyte * (-(-length // PAGE)))()
    start = address & ~(PAGE - 1)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
    assert libc.mincore(ctypes.c_void_p(start), ctypes.c_size_t(address + length - start),
                        vec) == 0
    return [v & 1 for v in vec]


def _drop(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="needs posix_fadvise")
def test_prefetch_reads_the_pages_of_the_rows_asked_for(tmp_path):
    path = tmp_path / "wide.npy"
    np.save(path, np.ones((512, PAGE // 8)))       # one page a row
    src = as_source(path)
    view = src.view
    _drop(path)
    rows = np.array([3, 100, 101, 400])
    if any(_resident(view[r].ctypes.data, PAGE)[0] for r in rows):
        pytest.skip("this file system keeps the pages cached (no POSIX_FADV_DONTNEED)")
    src.prefetch((rows, None))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if all(_resident(view[r].ctypes.data, PAGE)[0] for r in rows):
            break
        time.sleep(0.01)
    assert all(_resident(view[r].ctypes.data, PAGE)[0] for r in rows)
    # No read around: the rows between were not asked for.
    assert not any(_resident(view[r].ctypes.data, PAGE)[0] for r in range(200, 300))


def test_prefetch_without_process_madvise_falls_back_to_madvise(tmp_path, monkeypatch):
    path = tmp_path / "wide.npy"
    np.save(path, np.ones((64, PAGE // 8)))
    monkeypatch.setattr(_memmap, "_SYS_PROCESS_MADVISE", None)
    src = as_source(path)
    calls = []
    real = src._map

    class Spy:
        closed = False

        def madvise(self, *args):
            calls.append(args)
            return real.madvise(*args)
    src._map = Spy()
    src._probe_ok = False
    src.prefetch((np.array([1, 2, 9]), None))
    # Rows 1 and 2 share a merged range; row 9 has its own.
    assert [a[0] for a in calls] == [mmap.MADV_WILLNEED] * 2


def _rss_anon():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon in /proc/self/status")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc/self/status")
def test_anonymous_memory_stays_within_two_batches_and_a_constant(tmp_path):
    rows, width, b = 16384, 512, 256            # 64 MiB file, 1 MiB batches
    path = tmp_path / "big.npy"
    out = np.lib.format.open_memmap(path, "w+", np.float64, (rows, width))
    out[:] = 1.0
    out.flush()
    del out
    batch_bytes = b * width * 8
    next(Minibatch(np.zeros((4, width)), batch_size=b))   # the kernels' first-batch set-up
    base = _rss_anon()
    mb = Minibatch(str(path), batch_size=b, epochs=True, random_seed=0)
    peak = base
    for _ in range(2 * rows // b):               # every row twice
        batch = next(mb)
        peak = max(peak, _rss_anon())
    assert batch.shape == (b, width)
    bound = 2 * batch_bytes + (8 << 20)
    assert peak - base <= bound, (peak - base, bound)


def test_pickling_keeps_the_file_name_not_the_bytes(stored):
    path, data = stored
    mb = Minibatch(np.load(path, mmap_mode="r")[::2], batch_size=8, random_seed=4)
    next(mb)
    blob = pickle.dumps(mb)
    assert len(blob) < data.nbytes // 10
    other = pickle.loads(blob)
    assert other.step == 1
    np.testing.assert_array_equal(next(other), next(mb))


def test_a_closed_source_is_refused(stored):
    path, _ = stored
    src = as_source(path)
    mb = Minibatch(src, batch_size=4)
    src.close()
    with pytest.raises(ValueError, match="data is closed: MemmapSource"):
        next(mb)
    with pytest.raises(ValueError, match="data is closed: MemmapSource"):
        Minibatch(src, batch_size=4)


def test_a_cast_is_made_batch_by_batch(stored):
    path, data = stored
    mb = Minibatch(str(path), batch_size=8, dtype=np.float32, random_seed=1)
    np.testing.assert_array_equal(next(mb), data[mb.last_indices[0]].astype(np.float32))
    with pytest.raises(TypeError, match="data must have a dtype that casts to int64, got "
                                        "float64"):
        Minibatch(str(path), batch_size=8, dtype=np.int64)


def test_in_memory_size_copies_part_of_a_memory_mapped_file(stored):
    path, data = stored
    mb = Minibatch(str(path), batch_size=8, in_memory_size=100, random_seed=1)
    assert type(mb) is Minibatch and not isinstance(mb.data, np.memmap)
    assert (mb.last_indices is None) and next(mb).shape == (8, 5)
    assert (mb.last_indices[0] < 100).all()
