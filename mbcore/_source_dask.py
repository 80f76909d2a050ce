"""A Dask array as a row source: one task per touched chunk, run where the chunk lives."""
from __future__ import annotations

import uuid
from typing import Optional, Sequence

import numpy as np

from ._chunks import ChunkGrid, check_out, check_store_dtype
from ._source import Source
from ._spec import check_casting

__all__ = ["DaskSource"]


def take_block(chunk, index, dtype):
    """``chunk[index]`` as a NumPy array of ``dtype``: the part of one chunk a
    batch uses (the task each touched chunk runs, on the worker holding it)."""
    block = np.asarray(chunk)[index]
    return block if block.dtype == dtype else block.astype(dtype)


class DaskSource(Source):
    """Rows of a ``dask.array.Array``, gathered by one task per touched chunk.

    A gather groups the batch's positions by the chunk they fall in along
    every axis and builds a graph of one task per touched chunk over the
    array's own chunk keys: each task takes that chunk's rows where the
    chunk is (on the worker holding it, for an array persisted on a
    cluster), and only those rows travel back, to be copied into the batch.
    The graph runs on Dask's current scheduler: the active
    ``dask.distributed.Client`` when there is one.  With a client,
    :meth:`prefetch` submits the next batch's tasks at once, and its
    :meth:`gather` only collects their rows.

    Parameters
    ----------
    array : dask.array.Array
        Of known chunk sizes on every axis (``array.compute_chunk_sizes()``
        gives them to an array that lacks them); any fixed-size dtype.
    dtype : dtype, optional
        The batches' dtype, when it is not the array's: each task casts its
        rows.
    casting : str, optional
        NumPy's rule for that cast (default ``"same_kind"``).
    scheduler : optional
        Passed to ``dask.base.get_scheduler``: a scheduler name or a
        ``get`` function.  Default: Dask's current scheduler.

    Raises
    ------
    TypeError
        ``array`` is not a Dask array; its dtype holds Python objects, or
        does not cast to ``dtype`` under ``casting``.
    ValueError
        An axis has chunks of unknown size (NaN), or the array is 0-d.

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> from mbcore._source_dask import DaskSource
    >>> x = da.from_array(np.arange(4000.0).reshape(1000, 4), chunks=(100, 4))
    >>> src = DaskSource(x, scheduler="sync")
    >>> out = np.empty((3, 4))
    >>> src.gather((np.array([950, 5, 950]), None), out)
    >>> out[:, 0]
    array([3800.,   20., 3800.])
    """

    def __init__(self, array, *, dtype=None, casting: str = "same_kind", scheduler=None):
        try:
            import dask.array as da
        except ImportError as e:                             # pragma: no cover
            raise ImportError("DaskSource needs dask (pip install 'mbcore-minibatch[data]')"
                              ) from e
        if not isinstance(array, da.Array):
            raise TypeError(f"array must be a dask.array.Array, got {type(array).__name__}")
        if array.ndim == 0:
            raise ValueError(f"array must have at least one axis, got shape {array.shape}")
        for k, c in enumerate(array.chunks):
            if any(n != n for n in c):
                raise ValueError(
                    f"array has chunks of unknown size on axis {k} (shape {array.shape}, "
                    f"chunks {c}): call array.compute_chunk_sizes() first")
        check_casting(casting)
        self.array = array
        self.shape = tuple(int(n) for n in array.shape)
        self.dtype = check_store_dtype(array.dtype, dtype, casting, "the dask array")
        self.grid = ChunkGrid(self.shape, array.chunks)
        self.scheduler = scheduler
        self._ahead = None          # (indices, blocks, futures, client) of a prefetched batch
        self._keys = np.empty(tuple(len(c) for c in array.chunks), dtype=object)
        for key in _flatten(array.__dask_keys__()):
            self._keys[key[1:]] = key

    def _get(self):
        from dask.base import get_scheduler
        return get_scheduler(scheduler=self.scheduler, collections=[self.array])

    def _graph(self, indices):
        """The batch's blocks (``ChunkGrid.plan``), and a graph of one task per
        touched chunk over the array's graph with the keys of those tasks."""
        from dask.highlevelgraph import HighLevelGraph
        blocks = self.grid.plan(indices)
        name = "mbcore-take-" + uuid.uuid4().hex
        layer = {(name, i): (take_block, self._keys[key], ci, self.dtype)
                 for i, (key, _, ci) in enumerate(blocks)}
        graph = HighLevelGraph.from_collections(name, layer, dependencies=[self.array])
        return blocks, graph, list(layer)

    def gather(self, indices: Sequence[Optional[np.ndarray]], out: np.ndarray) -> None:
        check_out(self, indices, out)
        ahead, self._ahead = self._ahead, None
        if ahead is not None and _same(ahead[0], indices):
            _, blocks, futures, client = ahead
            parts = None
        else:
            if ahead is not None:
                ahead[3].cancel(ahead[2])
            blocks, graph, keys = self._graph(indices)
            parts = self._get()(graph, keys) if keys else []
        if parts is None:
            parts = client.gather(futures)
        for (_, oi, _), part in zip(blocks, parts):
            out[oi] = part

    def prefetch(self, indices: Sequence[Optional[np.ndarray]]) -> None:
        """With a ``dask.distributed`` client as the scheduler: submit the
        tasks of the batch ``indices`` now, so that the cluster takes its
        rows while the caller works; the :meth:`gather` of the same indices
        then only collects them.  A no-op on other schedulers."""
        get = self._get()
        client = getattr(get, "__self__", None)
        if client is None or type(client).__name__ != "Client":
            return
        if self._ahead is not None:
            self._ahead[3].cancel(self._ahead[2])
        blocks, graph, keys = self._graph(indices)
        futures = client.get(graph, keys, sync=False) if keys else []
        self._ahead = (tuple(None if i is None else np.array(i) for i in indices),
                       blocks, futures, client)

    def close(self) -> None:
        """Cancel the tasks of a batch prefetched and not gathered."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead[3].cancel(ahead[2])

    def __repr__(self):
        return (f"DaskSource(shape={self.shape}, dtype={self.dtype}, "
                f"chunks={self.array.chunksize}, name={self.array.name!r})")


def _flatten(keys):
    if isinstance(keys, list):
        for k in keys:
            yield from _flatten(k)
    else:
        yield keys


def _same(a, b):
    """Whether two batches' indices (one entry per axis) are equal."""
    return len(a) == len(b) and all(
        (x is None and y is None) or (x is not None and y is not None and np.array_equal(x, y))
        for x, y in zip(a, b))
