"""Gathering a batch from a chunked array: group by chunk, cache, read ahead.

A chunked store (Zarr, HDF5) reads and decodes whole chunks.  A batch's
positions are grouped by the chunk they fall in along each axis
(:class:`ChunkGrid`), each touched chunk is read once per batch, and each
chunk's rows are copied to their places in the batch.  Decoded chunks are
kept in a bounded LRU cache (:class:`ChunkCache`), and :meth:`ChunkedSource.prefetch`
reads the next batch's chunks into it on a background thread.

:class:`ChunkedSource` is the base of the store sources; a subclass says how
to read a list of chunks (``_read``).  The Dask source uses only the grid.
"""
from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ._source import Source
from ._spec import check_dtype

__all__ = ["ChunkGrid", "ChunkCache", "ChunkedSource", "DEFAULT_CACHE_BYTES", "check_store_dtype",
           "check_shape", "check_out"]

# 256 MiB: room for the chunks of a few batches of typical stores (chunks of
# 1 to 16 MiB) without holding a large share of a training machine's memory.
DEFAULT_CACHE_BYTES = 256 * 2**20

Key = Tuple[int, ...]


def check_store_dtype(stored, dtype, casting, what):
    """The dtype a source's batches have: ``stored`` itself, or ``dtype`` when
    asked for and castable from ``stored`` under ``casting``."""
    stored = np.dtype(stored)
    if dtype is None:
        if stored.hasobject:
            raise TypeError(
                f"{what} has dtype {stored}, which holds Python objects (variable-length "
                f"strings or references): pass dtype= a fixed-size dtype to cast to")
        return stored
    dtype = check_dtype(dtype, "dtype")
    if stored != dtype and not np.can_cast(stored, dtype, casting):
        raise TypeError(
            f"{what} has dtype {stored}, which does not cast to dtype={dtype} under "
            f"casting={casting!r} (casting='unsafe' allows any cast)")
    return dtype


def check_shape(shape, what):
    """``shape`` as a tuple of ints, every axis of known length."""
    if shape is None:
        raise ValueError(f"{what} has no shape (an empty dataspace), so no rows to sample")
    shape = tuple(shape)
    if len(shape) == 0:
        raise ValueError(f"{what} must have at least one axis, got shape {shape}")
    for k, n in enumerate(shape):
        if n is None or (isinstance(n, float) and n != n):
            raise ValueError(
                f"{what} has an axis of unknown length: axis {k} of shape {shape}")
    return tuple(int(n) for n in shape)


def check_out(src, indices, out):
    """Raise unless ``out`` is C-contiguous, of ``src``'s dtype and of the
    shape the batch ``indices`` (one entry per axis of ``src``) gives."""
    if len(indices) != len(src.shape):
        raise ValueError(f"indices must have one entry per axis ({len(src.shape)}), "
                         f"got {len(indices)}")
    want = tuple(n if idx is None else len(idx) for n, idx in zip(src.shape, indices))
    if out.shape != want or out.dtype != src.dtype or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous array of shape {want} and dtype "
                         f"{src.dtype}, got shape {out.shape}, dtype {out.dtype}")


class ChunkGrid:
    """The chunk boundaries of each axis of an array.

    Parameters
    ----------
    shape : tuple of int
    chunks : sequence, one entry per axis
        An int (a regular grid: every chunk that long, the last one clipped)
        or a sequence of chunk lengths summing to the axis length (Dask's
        ``chunks``).
    """

    def __init__(self, shape, chunks):
        if len(chunks) != len(shape):
            raise ValueError(f"chunks must have one entry per axis of shape {shape}, "
                             f"got {chunks}")
        self.shape = tuple(int(n) for n in shape)
        self.size = []           # the chunk length of a regular axis, else 0
        self.bounds = []         # chunk k of axis a: [bounds[a][k], bounds[a][k + 1])
        for n, c in zip(self.shape, chunks):
            if isinstance(c, (int, np.integer)):
                c = max(int(c), 1)
                self.size.append(c)
                self.bounds.append(np.minimum(np.arange(0, n + c, c, dtype=np.int64), n)
                                   if n else np.zeros(1, np.int64))
                if n and self.bounds[-1][-2] == n:
                    self.bounds[-1] = self.bounds[-1][:-1]
            else:
                lengths = np.asarray(c, dtype=np.int64)
                self.size.append(0)
                self.bounds.append(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
                if self.bounds[-1][-1] != n:
                    raise ValueError(f"chunk lengths {tuple(c)} do not sum to the axis "
                                     f"length {n}")

    def nchunks(self, axis):
        return len(self.bounds[axis]) - 1

    def chunk_slice(self, key: Key):
        """The region of chunk ``key`` (a chunk coordinate per axis), as slices."""
        return tuple(slice(int(b[k]), int(b[k + 1])) for b, k in zip(self.bounds, key))

    def chunk_nbytes(self, key: Key, itemsize: int) -> int:
        """Bytes of chunk ``key`` decoded, for items of ``itemsize`` bytes."""
        n = itemsize
        for b, k in zip(self.bounds, key):
            n *= int(b[k + 1] - b[k])
        return n

    def group_axis(self, axis, idx):
        """``idx`` (positions along ``axis``, or None for the whole axis)
        grouped by chunk: a list of (chunk, batch positions, positions in
        the chunk), the positions as int64 arrays or, for a whole axis, as
        slices.  O(b log b) for b positions (a stable sort by chunk)."""
        b = self.bounds[axis]
        if idx is None:
            return [(k, slice(int(b[k]), int(b[k + 1])), slice(None))
                    for k in range(len(b) - 1)]
        idx = np.asarray(idx)
        if idx.size == 0:
            return []
        size = self.size[axis]
        cid = idx // size if size else np.searchsorted(b, idx, side="right") - 1
        order = np.argsort(cid, kind="stable")
        scid = cid[order]
        cuts = np.flatnonzero(scid[1:] != scid[:-1]) + 1
        starts = np.concatenate([[0], cuts])
        ends = np.concatenate([cuts, [len(idx)]])
        groups = []
        for s, e in zip(starts.tolist(), ends.tolist()):
            k = int(scid[s])
            pos = order[s:e]
            groups.append((k, pos, idx[pos] - b[k]))
        return groups

    def plan(self, indices):
        """The chunks a batch touches and where their elements go: a list of
        (chunk key, index into the batch, index into the chunk).  The
        indices use NumPy's outer (``np.ix_``) form on every sampled axis and
        slices on whole axes, so ``out[i] = chunk[j]`` copies one block."""
        if len(indices) != len(self.shape):
            raise ValueError(f"indices must have one entry per axis ({len(self.shape)}), "
                             f"got {len(indices)}")
        per_axis = []
        for a, idx in enumerate(indices):
            if idx is not None:
                idx = np.asarray(idx)
                if idx.ndim != 1 or idx.dtype.kind not in "iu":
                    raise TypeError(f"indices[{a}] must be a 1-d array of integers or None, "
                                    f"got {idx.dtype} of shape {idx.shape}")
                if idx.size and (idx.min() < 0 or idx.max() >= self.shape[a]):
                    bad = idx[(idx < 0) | (idx >= self.shape[a])][0]
                    raise IndexError(f"indices[{a}] holds {int(bad)}, out of range for "
                                     f"axis {a} of length {self.shape[a]}")
            per_axis.append(self.group_axis(a, idx))
        arrays = [a for a, idx in enumerate(indices) if idx is not None]
        outer = len(arrays) > 1
        shapes = {}
        if outer:
            for j, a in enumerate(arrays):
                shp = [1] * len(arrays)
                shp[j] = -1
                shapes[a] = shp
        blocks = []
        for combo in itertools.product(*per_axis):
            key = tuple(g[0] for g in combo)
            if outer:
                oi = tuple(g[1].reshape(shapes[a]) if a in shapes else g[1]
                           for a, g in enumerate(combo))
                ci = tuple(g[2].reshape(shapes[a]) if a in shapes else g[2]
                           for a, g in enumerate(combo))
            else:
                oi = tuple(g[1] for g in combo)
                ci = tuple(g[2] for g in combo)
            blocks.append((key, oi, ci))
        return blocks


class ChunkCache:
    """Decoded chunks by key, least recently used first out, at most
    ``nbytes`` bytes in all (a chunk larger than that is never kept).
    Thread-safe."""

    def __init__(self, nbytes: int):
        if isinstance(nbytes, bool) or not isinstance(nbytes, (int, np.integer)) or nbytes < 0:
            raise ValueError(f"cache_bytes must be an int >= 0, got {nbytes!r}")
        self.capacity = int(nbytes)
        self.nbytes = 0
        self._chunks: "OrderedDict[Key, np.ndarray]" = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self):
        return len(self._chunks)

    def __contains__(self, key):
        return key in self._chunks

    def get(self, key: Key) -> Optional[np.ndarray]:
        with self._lock:
            chunk = self._chunks.get(key)
            if chunk is not None:
                self._chunks.move_to_end(key)
            return chunk

    def put(self, key: Key, chunk: np.ndarray) -> None:
        """Keep ``chunk`` (a copy, if it is a view: the cache holds exactly
        the bytes it counts)."""
        if chunk.nbytes > self.capacity:
            return
        if chunk.base is not None:
            chunk = chunk.copy()
        with self._lock:
            old = self._chunks.pop(key, None)
            if old is not None:
                self.nbytes -= old.nbytes
            self._chunks[key] = chunk
            self.nbytes += chunk.nbytes
            while self.nbytes > self.capacity:
                _, gone = self._chunks.popitem(last=False)
                self.nbytes -= gone.nbytes

    def clear(self) -> None:
        with self._lock:
            self._chunks.clear()
            self.nbytes = 0


class ChunkedSource(Source):
    """A :class:`Source` over an array stored in chunks.

    Subclasses set ``shape``, ``dtype`` and ``grid`` (a :class:`ChunkGrid`)
    and implement ``_read(keys)``: the chunks ``keys`` as a list of arrays of
    ``dtype``, in that order, read in as few calls to the store as it allows.

    Parameters
    ----------
    cache_bytes : int
        Capacity of the LRU chunk cache, in bytes of decoded chunks (default
        :data:`DEFAULT_CACHE_BYTES`, 256 MiB; 0 disables it).  The chunks
        of the batch being gathered are held for that batch whatever the
        capacity.
    readahead : bool
        Whether :meth:`prefetch` reads the next batch's chunks into the cache
        on a background thread (default True), up to half the cache.

    Attributes
    ----------
    stats : dict
        Counters since construction (or :meth:`reset_stats`): ``chunks_read``
        and ``bytes_read`` (chunks read from the store, in decoded bytes),
        ``cache_hits`` (chunks a gather found in the cache) and
        ``bytes_returned`` (bytes written to batches).  ``bytes_read /
        bytes_returned`` is the I/O amplification.
    """

    grid: ChunkGrid

    def __init__(self, cache_bytes: int = DEFAULT_CACHE_BYTES, readahead: bool = True):
        if not isinstance(readahead, (bool, np.bool_)):
            raise TypeError(f"readahead must be a bool, got {readahead!r}")
        self.cache = ChunkCache(cache_bytes)
        self.readahead = bool(readahead)
        self._lock = threading.Lock()           # one gather or read-ahead at a time
        self._pending = None                   # the read-ahead in flight
        self._reader: Optional[ThreadPoolExecutor] = None
        self._closed = False
        self.reset_stats()

    # -- subclasses
    def _read(self, keys: List[Key]) -> List[np.ndarray]:
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran (or the store's file was closed)."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"{type(self).__name__} is closed")

    # -- the contract
    def reset_stats(self) -> None:
        self.stats = dict(chunks_read=0, bytes_read=0, cache_hits=0, bytes_returned=0)

    @property
    def amplification(self) -> float:
        """Bytes read from the store per byte returned, since the counters
        were reset (nan before any gather)."""
        ret = self.stats["bytes_returned"]
        return self.stats["bytes_read"] / ret if ret else float("nan")

    def _fetch(self, keys: Iterable[Key]) -> Dict[Key, np.ndarray]:
        """Chunks ``keys`` from the cache, reading the missing ones in one
        ``_read``; each key is read at most once."""
        found, missing = {}, []
        for key in keys:
            chunk = self.cache.get(key)
            if chunk is None:
                missing.append(key)
            else:
                found[key] = chunk
        self.stats["cache_hits"] += len(found)
        if missing:
            chunks = self._read(missing)
            for key, chunk in zip(missing, chunks):
                found[key] = chunk
                self.cache.put(key, chunk)
                self.stats["chunks_read"] += 1
                self.stats["bytes_read"] += chunk.nbytes
        return found

    def gather(self, indices: Sequence[Optional[np.ndarray]], out: np.ndarray) -> None:
        self._check_open()
        check_out(self, indices, out)
        blocks = self.grid.plan(indices)
        self._wait_readahead()
        with self._lock:
            keys = list(dict.fromkeys(key for key, _, _ in blocks))
            chunks = self._fetch(keys)
        for key, oi, ci in blocks:
            out[oi] = chunks[key][ci]
        self.stats["bytes_returned"] += out.nbytes

    def _wait_readahead(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            try:
                pending.result()
            except Exception:
                pass                            # a hint: gather reads what is missing

    def _readahead(self, keys):
        with self._lock:
            if not self._closed:
                self._fetch(k for k in keys if k not in self.cache)

    def prefetch(self, indices: Sequence[Optional[np.ndarray]]) -> None:
        """Start reading the chunks of the batch ``indices`` into the cache on
        a background thread, when ``readahead`` is set: those not cached, in
        the batch's chunk order, up to half the cache's capacity."""
        self._check_open()
        if not self.readahead or self.cache.capacity == 0:
            return
        keys = list(dict.fromkeys(key for key, _, _ in self.grid.plan(indices)))
        # At most half the cache: chunks read ahead must survive until their
        # gather, next to the batch in use (a read-ahead the cache cannot
        # hold would be read twice).
        budget, missing = self.cache.capacity // 2, []
        for key in keys:
            if key not in self.cache:
                budget -= self.grid.chunk_nbytes(key, self.dtype.itemsize)
                if budget < 0:
                    break
                missing.append(key)
        if not missing:
            return
        self._wait_readahead()
        if self._reader is None:
            self._reader = ThreadPoolExecutor(1, thread_name_prefix="mbcore-readahead")
        self._pending = self._reader.submit(self._readahead, missing)

    def close(self) -> None:
        """Stop the read-ahead thread and drop the cache; gathers then raise."""
        self._wait_readahead()
        if self._reader is not None:
            self._reader.shutdown(wait=True)
            self._reader = None
        self._closed = True
        self.cache.clear()

    # -- pickling
    def __getstate__(self):
        """The store's handle and the settings; the cache, the read-ahead
        thread and the counters start afresh where the pickle is loaded."""
        state = self.__dict__.copy()
        for name in ("_lock", "_pending", "_reader", "stats"):
            state.pop(name, None)
        state["cache"] = self.cache.capacity
        return state

    def __setstate__(self, state):
        state = dict(state)
        self.cache = ChunkCache(state.pop("cache"))
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._pending = None
        self._reader = None
        self.reset_stats()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
