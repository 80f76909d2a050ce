"""Memory-mapped arrays as a source: random rows read from disk at its speed.

A random row gather from a memory-mapped file is a stream of page faults.
On Linux each fault on a file mapping reads ahead around the faulting page
(up to the device's ``read_ahead_kb``, 8 MiB on the VM measured in
docs/sources.md), so a batch of scattered rows reads megabytes per row, and
the faults of a batch are served one at a time.  :class:`MemmapSource`
reads the same bytes with two pieces of advice to the kernel:

- ``MADV_RANDOM`` on a mapping of its own of the file: a fault reads only
  its page.  The caller's mapping is left as it is (its sequential reads
  keep their readahead).
- ``MADV_WILLNEED`` on the pages of a batch's rows, sorted and merged into
  ranges, before the batch is gathered, and on those of the next batch
  right after: the reads are queued to the device together (one
  ``process_madvise`` call per 1024 ranges) rather than one fault at a
  time, and those of batch t+1 go on while batch t is used.  When a sample
  of the batch's pages is already in the page cache (``mincore``), the
  advice is skipped: on a cached file it costs more than the gather.

The rows are then copied by the kernels, through the strides, as for any
array: batches are those of the array in memory, bit for bit.
"""
import ctypes
import ctypes.util
import mmap
import os
from typing import Optional, Sequence

import numpy as np

from ._source import Source

__all__ = ["MemmapSource", "open_npy", "mapped_base"]

PAGE = mmap.PAGESIZE
# process_madvise(2) takes at most UIO_MAXIOV ranges a call.
_MAX_RANGES = 1024
# Pages sampled from a batch to tell whether it is cached.
_PROBES = 8
# Advise only where a row (a slab along the advised axis) spans at most this
# many bytes; beyond, the pages a batch needs are not the slabs' pages.
_MAX_SLAB = 1 << 24

_SYS_PROCESS_MADVISE = {"x86_64": 440, "aarch64": 440}.get(os.uname().machine)


def _libc():
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        lib.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
        lib.syscall.restype = ctypes.c_long
        return lib
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


def mapped_base(arr):
    """(mmap, file name or None, file offset of the mmap, mode) of the mapping
    ``arr`` reads, or None when ``arr`` is not memory-mapped."""
    obj = arr
    while obj is not None:
        if isinstance(obj, np.memmap) and isinstance(getattr(obj, "_mmap", None), mmap.mmap):
            offset = obj.offset - obj.offset % mmap.ALLOCATIONGRANULARITY
            return obj._mmap, obj.filename, offset, obj.mode
        if isinstance(obj, mmap.mmap):
            return obj, None, 0, None
        obj = getattr(obj, "base", None)
    return None


def _address(m):
    """The address of mmap ``m``'s first byte."""
    view = np.frombuffer(m, np.uint8)
    address = view.ctypes.data
    del view
    return address


class MemmapSource(Source):
    """The rows of a memory-mapped array, read with random-access advice.

    Parameters
    ----------
    array : numpy.memmap or ndarray
        An array whose memory is a file mapping (an ``np.memmap``, a view of
        one, ``np.load(..., mmap_mode=...)``), any layout.
    what : str
        The argument's name, for messages.

    Attributes
    ----------
    array : ndarray
        The caller's array.
    view : ndarray
        The same elements through this source's own read-only mapping of the
        file (``MADV_RANDOM``), or ``array`` itself where there is no file
        name to map or the mapping is copy-on-write (``mode='c'``: its
        writes live only in the caller's mapping).
    """

    def __init__(self, array: np.ndarray, what: str = "data") -> None:
        base = mapped_base(array)
        if base is None:
            raise TypeError(f"{what} must be a memory-mapped array (np.memmap), got "
                            f"{type(array).__name__} of shape {getattr(array, 'shape', None)}")
        m, filename, file_offset, mode = base
        if m.closed:
            raise ValueError(f"{what} is a memory-mapped array whose mapping is closed")
        self.array = array
        self.shape = tuple(array.shape)
        self.dtype = array.dtype
        self.closed = False
        self.view = array
        self._map = m
        self._own = None
        self._file = None
        if filename is not None and mode != "c" and array.size:
            pos = file_offset + array.__array_interface__["data"][0] - _address(m)
            self._file = (filename, pos)
            fd = os.open(filename, os.O_RDONLY)
            try:
                own = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
            finally:
                os.close(fd)
            if hasattr(own, "madvise") and hasattr(mmap, "MADV_RANDOM"):
                own.madvise(mmap.MADV_RANDOM)
            self.view = np.ndarray(array.shape, array.dtype, buffer=own, offset=pos,
                                   strides=array.strides)
            self.view.flags.writeable = False
            self._own = own
            self._map = own
        self._base = _address(self._map)
        # Without a file name, mincore's answer cannot be trusted (_owns).
        self._probe_ok = _LIBC is not None and filename is not None and _owns(filename)
        self._pidfd = None
        self._plans = {}

    # -- the Source contract -------------------------------------------------
    def gather(self, indices: Sequence[Optional[np.ndarray]], out: np.ndarray) -> None:
        self._check_open()
        self.prefetch(indices)
        batch = self.view
        for axis, ix in enumerate(indices):
            if ix is not None:
                batch = np.take(batch, ix, axis=axis)
        out[...] = batch

    def prefetch(self, indices: Sequence[Optional[np.ndarray]]) -> None:
        """Queue the reads of the pages these indices' rows lie on
        (``MADV_WILLNEED``), unless a sample of them is cached."""
        if self.closed:
            return
        pattern = tuple(ix is None for ix in indices)
        plan = self._plans.get(pattern)
        if plan is None:
            plan = self._plans[pattern] = self._advice_plan(indices)
        if plan is False:
            return
        axis, lo, extent = plan
        ix = indices[axis]
        if ix is None or not len(ix):
            return
        starts = np.unique(ix) * self.view.strides[axis] + lo
        if self.view.strides[axis] < 0:
            starts = starts[::-1]
        first = starts & ~(PAGE - 1)
        ends = starts + extent
        if self._probe_ok and self._cached(first):
            return
        # Merge the row ranges that touch or share a page.
        cut = np.empty(len(first), bool)
        cut[0] = True
        np.greater(first[1:], ends[:-1], out=cut[1:])
        heads = np.flatnonzero(cut)
        iov = np.empty((len(heads), 2), np.uint64)
        iov[:, 0] = first[heads]
        iov[:, 1] = np.append(ends[heads[1:] - 1], ends[-1]) - first[heads]
        self._advise(iov)

    def close(self) -> None:
        """Drop this source's mapping; the caller's array stays usable."""
        self.closed = True
        own, self._own = self._own, None
        self.view = None
        if own is not None:
            try:
                own.close()
            except BufferError:
                pass        # a batch still reads it; it closes when freed
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    # -- internals -------------------------------------------------------------
    def _check_open(self):
        if self.closed:
            raise ValueError("this MemmapSource is closed")

    def _advice_plan(self, indices):
        """(axis, first byte's address of a slab at index 0, slab bytes) of
        the sampled axis with the largest stride, or False: no advice."""
        view = self.view
        sampled = [k for k, ix in enumerate(indices) if ix is not None]
        if not sampled or view.size == 0:
            return False
        axis = max(sampled, key=lambda k: abs(view.strides[k]))
        lo = hi = 0
        for k, (n, st) in enumerate(zip(view.shape, view.strides)):
            if k != axis:
                lo += min(0, (n - 1) * st)
                hi += max(0, (n - 1) * st)
        extent = hi - lo + view.itemsize
        if extent > _MAX_SLAB:
            return False
        return axis, view.__array_interface__["data"][0] + lo, extent

    def _cached(self, pages):
        """Whether every one of up to _PROBES pages spread over ``pages``
        (addresses, ascending) is in the page cache."""
        vec = ctypes.c_ubyte(0)
        step = max(1, len(pages) // _PROBES)
        for address in pages[::step][:_PROBES].tolist():
            if _LIBC.mincore(address, PAGE, ctypes.byref(vec)) != 0 or not vec.value & 1:
                return False
        return True

    def _advise(self, iov):
        """MADV_WILLNEED on the (address, length) rows of ``iov``."""
        if _SYS_PROCESS_MADVISE is not None and _LIBC is not None and self._pidfd != -1:
            try:
                if self._pidfd is None:
                    self._pidfd = os.pidfd_open(os.getpid())
                for k in range(0, len(iov), _MAX_RANGES):
                    part = np.ascontiguousarray(iov[k:k + _MAX_RANGES])
                    if _LIBC.syscall(ctypes.c_long(_SYS_PROCESS_MADVISE),
                                     ctypes.c_long(self._pidfd),
                                     ctypes.c_void_p(part.ctypes.data),
                                     ctypes.c_size_t(len(part)),
                                     ctypes.c_int(mmap.MADV_WILLNEED), ctypes.c_uint(0)) < 0:
                        raise OSError(ctypes.get_errno(), "process_madvise")
                return
            except (OSError, AttributeError):
                # No process_madvise (Linux < 5.10, or not allowed): one
                # madvise a range.
                if self._pidfd not in (None, -1):
                    os.close(self._pidfd)
                self._pidfd = -1
        if not hasattr(self._map, "madvise"):
            return
        for address, length in iov.tolist():
            try:
                self._map.madvise(mmap.MADV_WILLNEED, address - self._base, length)
            except (OSError, ValueError):
                return

    def __reduce__(self):
        # The file's name and where the array lies in it, not its bytes; a
        # copy-on-write mapping (its writes are this process's) is copied.
        if self._file is None:
            from ._source import ArraySource
            return ArraySource, (np.array(self.array),)
        return _reopen, (*self._file, self.shape, self.dtype.str, self.array.strides)

    def __repr__(self):
        return (f"MemmapSource(shape={self.shape}, dtype={self.dtype}"
                + (", closed" if self.closed else "") + ")")


def _owns(filename):
    """Whether ``mincore`` reports the page cache of this file to this
    process (Linux: the file's owner, or a writer, or root); else it reports
    every page as cached, and cannot tell whether to advise."""
    try:
        return (os.geteuid() == 0 or os.stat(filename).st_uid == os.geteuid()
                or os.access(filename, os.W_OK))
    except OSError:
        return False


def _reopen(filename, pos, shape, dtype, strides):
    """A MemmapSource over the elements of ``filename`` that a pickled one
    read (read-only)."""
    whole = np.memmap(filename, np.uint8, "r")
    return MemmapSource(np.ndarray(shape, dtype, buffer=whole, offset=pos, strides=strides))


def open_npy(path, what="data"):
    """A MemmapSource over the ``.npy`` file at ``path`` (read-only)."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} names no file: {os.fspath(path)!r}") from None
    except (ValueError, OSError) as e:
        raise ValueError(f"{what} must name a .npy file, got {os.fspath(path)!r}: {e}") from None
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{what} must name a .npy file (one array), got {os.fspath(path)!r} "
                         f"holding {type(arr).__name__}")
    if arr.dtype.hasobject:
        raise TypeError(f"{what} must not hold Python objects, got dtype {arr.dtype} "
                        f"in {os.fspath(path)!r}")
    if mapped_base(arr) is None:
        # An empty array is not mapped: there is nothing to read.
        raise ValueError(f"{what} names an empty array ({arr.shape}) in {os.fspath(path)!r}")
    return MemmapSource(arr, what)
