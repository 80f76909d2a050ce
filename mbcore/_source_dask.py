"""A Dask array as a row source: one task per touched chunk, run where the chunk lives.

With a ``dask.distributed`` client and a persisted array, a gather runs one
task per worker that holds touched chunks, pinned to that worker (strict
worker restrictions, so neither the scheduler's placement nor work stealing
moves it); the task reads the chunks from the worker's own memory and never
depends on them, so no chunk is copied between workers.  Which worker holds
which chunk is asked of the scheduler (``Client.who_has``) once and cached
per chunk key; a chunk that a task no longer finds where the cache said
(moved, or its worker gone) is looked up again and gathered in a next round.
A persisted chunk still being computed (just persisted, or lost with its
worker and computed again by Dask) is waited for, then read where it lands.
The chunks of an array that is not persisted are computed by the scheduler,
a task per touched chunk over the array's own graph, as on the other
schedulers: each batch computes them again (persist the array to read them
in place).
"""
from __future__ import annotations

import asyncio
import uuid
from typing import Optional, Sequence

import numpy as np

from ._chunks import ChunkGrid, check_out, check_store_dtype
from ._source import Source
from ._spec import check_casting

__all__ = ["DaskSource"]

# Rounds of pinned tasks a gather runs before the chunks still not found
# where the scheduler said go to the scheduler's placement (a task per chunk
# that depends on it): a bound on the retries while chunks keep moving.
PINNED_ROUNDS = 4
# A gather waits this long for its tasks before it asks the scheduler which
# workers are alive (a task pinned to a worker that left never runs), then
# twice as long each time, up to PATIENCE_MAX seconds.
PATIENCE = 0.2
PATIENCE_MAX = 2.0
# The futures of gathered batches are let go (their results freed on the
# workers) every RELEASE_BATCHES batches or RELEASE_BYTES bytes of results.
# Each release is a message of the client's stream to the scheduler, which
# sends at most one batch of messages each 10 ms, so a release sent between
# two gathers holds the next one's graph back.  Batches of 128 rows back to
# back took 10.8 ms with no release and 17.1 ms with one after each; in
# three interleaved runs (best of 5 blocks of 32 batches, load average 4-6),
# 12.3-19.6 ms releasing every 16 batches against 14.8-22.6 ms after each
# at 128 rows, and 19.6-39.4 against 22.5-33.5 ms at 8192 rows (even within
# the noise).  2-vCPU AMD EPYC VM (Zen 5), LocalCluster of 2 processes.
RELEASE_BATCHES = 16
RELEASE_BYTES = 64 * 2**20


def take_block(chunk, index, dtype):
    """``chunk[index]`` as a NumPy array of ``dtype``: the part of one chunk a
    batch uses (the task of a chunk computed by the scheduler's placement,
    and each chunk's part of a pinned task)."""
    block = np.asarray(chunk)[index]
    return block if block.dtype == dtype else block.astype(dtype)


def take_held(keys, indices, dtype):
    """On a worker: ``take_block`` of each chunk ``keys[i]`` that the worker
    holds in memory, at ``indices[i]``.  Returns (blocks, missing): the
    blocks of the chunks found, in order, and the positions in ``keys`` of
    those not held here (moved to another worker since the gather looked).
    The blocks come as one array, stacked along axis 0, when their other
    axes agree.  The chunks are read from the worker's own store, never
    fetched."""
    from distributed import get_worker
    data = get_worker().data
    blocks, missing = [], []
    for i, (key, index) in enumerate(zip(keys, indices)):
        try:
            chunk = data[key]
        except KeyError:
            missing.append(i)
            continue
        blocks.append(take_block(chunk, index, dtype))
    if len(blocks) > 1 and len({b.shape[1:] for b in blocks}) == 1:
        # One array travels with less framing than many (the common batch of
        # rows, the other axes whole in one chunk); the caller splits it.
        return np.concatenate(blocks), missing
    return blocks, missing


class DaskSource(Source):
    """Rows of a ``dask.array.Array``, gathered by one task per touched chunk.

    A gather groups the batch's positions by the chunk they fall in along
    every axis.  With a ``dask.distributed`` client and a persisted array
    (``array.persist()``), the chunks are read on the workers that hold
    them: one task per such worker, pinned to it, takes the rows of its
    chunks from the worker's memory, and only those rows travel back to be
    copied into the batch; no chunk moves between workers.  Chunks that no
    worker holds (an array not persisted) are computed where the scheduler
    places them, one task per touched chunk over the array's own graph; on
    the other schedulers (threads, processes, synchronous) every gather runs
    that graph.  :meth:`prefetch` submits the next batch's tasks at once on a
    client, and its :meth:`gather` only collects their rows.

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
        Passed to ``dask.base.get_scheduler``: a scheduler name, a ``get``
        function or a ``Client``.  Default: Dask's current scheduler.

    Attributes
    ----------
    stats : dict
        Counts since construction: ``batches`` gathered, ``pinned_tasks``
        (tasks run on a chunk's holder), ``chunk_tasks`` (chunks computed by
        the scheduler's placement), ``missed`` (chunks a pinned task did not
        find on its worker) and ``rounds`` (rounds of tasks beyond the first
        of a batch).

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
        self.stats = dict(batches=0, pinned_tasks=0, chunk_tasks=0, missed=0, rounds=0)
        self._ahead = None          # (indices, blocks, pending, client) of a prefetched batch
        self._keys = np.empty(tuple(len(c) for c in array.chunks), dtype=object)
        for key in _flatten(array.__dask_keys__()):
            self._keys[key[1:]] = key
        # The futures of a persisted array's chunks (its graph maps their keys
        # to them), by chunk key; chunks without one are computed.
        graph = array.__dask_graph__()
        self._futures = {}
        for key in self._keys.flat:
            value = graph.get(key)
            if type(value).__name__ == "Future" and hasattr(value, "key"):
                self._futures[key] = value
        self._holder = {}           # chunk key -> the address of a worker holding it
        self._done = []             # the futures of batches gathered, let go in bulk
        self._done_bytes = 0
        self._asked = False         # whether the holders of every chunk were asked once

    # ------------------------------------------------------------ schedulers

    def _get(self):
        from dask.base import get_scheduler
        return get_scheduler(scheduler=self.scheduler, collections=[self.array])

    def _client(self, get):
        """The ``dask.distributed`` client behind ``get``, or None."""
        client = getattr(get, "__self__", None)
        if client is None or type(client).__name__ != "Client":
            return None
        return client

    def _graph(self, blocks):
        """A graph of one task per block over the array's graph, and its keys."""
        from dask.highlevelgraph import HighLevelGraph
        name = "mbcore-take-" + uuid.uuid4().hex
        layer = {(name, i): (take_block, self._keys[key], ci, self.dtype)
                 for i, (key, _, ci) in enumerate(blocks)}
        graph = HighLevelGraph.from_collections(name, layer, dependencies=[self.array])
        return graph, list(layer)

    # ------------------------------------------------------------ the cluster

    def _where(self, client, blocks, pinned):
        """``blocks`` split into those of chunks held by a known worker
        ({address: blocks}) and the rest (computed by the scheduler).  With
        ``pinned`` False every block goes to the rest."""
        if not pinned or not self._futures:
            return {}, list(blocks)
        keys = [self._keys[key] for key, _, _ in blocks]
        unknown = [k for k in keys if k in self._futures and k not in self._holder]
        if unknown:
            ask = list(self._futures) if not self._asked else unknown
            self._asked = True
            futures = [self._futures[k] for k in ask]
            # Chunks still being computed (persist() just called, or a chunk
            # lost with its worker) are waited for, then read where they are.
            computing = [f for f in futures if not f.done()]
            if computing:
                from distributed import wait
                wait(computing)
            found = client.who_has(futures)
            for k, workers in found.items():
                if workers:
                    self._holder[k] = sorted(workers)[0]
        held, rest = {}, []
        for block, k in zip(blocks, keys):
            w = self._holder.get(k)
            if w is None:
                rest.append(block)
            else:
                held.setdefault(w, []).append(block)
        return held, rest

    def _submit(self, client, blocks, pinned=True):
        """Submit the tasks of ``blocks`` in one graph: one pinned task per
        worker holding some of their chunks, one task per other chunk.
        Returns the pending groups: (future, worker or None, blocks)."""
        from dask.highlevelgraph import HighLevelGraph, MaterializedLayer
        from dask.task_spec import Task
        held, rest = self._where(client, blocks, pinned)
        name = "mbcore-take-" + uuid.uuid4().hex
        layers, deps, keys, groups = {}, {}, [], []
        for i, (worker, bs) in enumerate(held.items()):
            key = (name, i)
            layer = f"{name}-{i}"
            # A Task takes its arguments as values: the chunk keys it is given
            # are not dependencies (a dependency would be fetched).
            layers[layer] = MaterializedLayer(
                {key: Task(key, take_held, [self._keys[k] for k, _, _ in bs],
                           [ci for _, _, ci in bs], self.dtype)},
                annotations={"workers": [worker], "allow_other_workers": False})
            deps[layer] = set()
            keys.append(key)
            groups.append((worker, bs))
        if rest:
            graph, rest_keys = self._graph(rest)
            layers.update(graph.layers)
            deps.update(graph.dependencies)
            keys.extend(rest_keys)
            groups.extend((None, [b]) for b in rest)
        if not keys:
            return []
        self.stats["pinned_tasks"] += len(held)
        self.stats["chunk_tasks"] += len(rest)
        futures = client.get(HighLevelGraph(layers, deps), keys, sync=False)
        if len(self._done) >= RELEASE_BATCHES or self._done_bytes >= RELEASE_BYTES:
            self._done, self._done_bytes = [], 0
        return [(f, w, bs) for f, (w, bs) in zip(futures, groups)]

    def _wait(self, client, pending):
        """Wait for the futures of ``pending``.  A task pinned to a worker
        that left never runs: once ``PATIENCE`` seconds pass, the workers
        still alive are asked, and the groups of the others are cancelled
        and returned to be gathered again (with their holders forgotten)."""
        from distributed import wait
        patience, again = PATIENCE, []
        while pending:
            try:
                wait([f for f, _, _ in pending], timeout=patience)
                break
            except (TimeoutError, asyncio.TimeoutError):          # one class from 3.11 on
                patience = min(2 * patience, PATIENCE_MAX)
            alive = set(client.nthreads())
            gone = [p for p in pending if p[1] is not None and p[1] not in alive]
            if gone:
                client.cancel([f for f, _, _ in gone])
                self._forget({w for _, w, _ in gone})
                again.extend(b for _, _, bs in gone for b in bs)
                pending = [p for p in pending if p[1] is None or p[1] in alive]
        return pending, again

    def _forget(self, workers):
        self._holder = {k: w for k, w in self._holder.items() if w not in workers}

    def _collect(self, client, pending, out):
        """Copy the rows of finished ``pending`` groups into ``out``; the
        blocks still to gather (their chunk not found, or their worker gone)."""
        pending, again = self._wait(client, pending)
        done = []
        for f, w, bs in pending:
            if f.status == "error" and w is not None:
                # A pinned task that failed with its worker (KilledWorker) is
                # gathered again; any other error is the batch's.
                from distributed.scheduler import KilledWorker
                if isinstance(f.exception(), KilledWorker):
                    self._forget({w})
                    again.extend(bs)
                    continue
            done.append((f, w, bs))
        results = client.gather([f for f, _, _ in done])
        self._done.append(done)
        self._done_bytes += out.nbytes
        for (_, w, bs), result in zip(done, results):
            if w is None:
                out[bs[0][1]] = result
                continue
            blocks, missing = result
            skip = set(missing)
            found = [b for i, b in enumerate(bs) if i not in skip]
            if isinstance(blocks, np.ndarray):
                blocks = np.split(blocks, np.cumsum([_rows(oi) for _, oi, _ in found[:-1]]))
            for (_, oi, _), block in zip(found, blocks):
                out[oi] = block
            for i in missing:
                self._holder.pop(self._keys[bs[i][0]], None)
                again.append(bs[i])
            self.stats["missed"] += len(missing)
        return again

    # ------------------------------------------------------------ the interface

    def gather(self, indices: Sequence[Optional[np.ndarray]], out: np.ndarray) -> None:
        check_out(self, indices, out)
        ahead, self._ahead = self._ahead, None
        if ahead is not None and _same(ahead[0], indices):
            _, blocks, pending, client = ahead
        else:
            if ahead is not None:
                ahead[3].cancel([f for f, _, _ in ahead[2]])
            blocks = self.grid.plan(indices)
            get = self._get()
            client = self._client(get)
            if client is None:
                graph, keys = self._graph(blocks)
                parts = get(graph, keys) if keys else []
                for (_, oi, _), part in zip(blocks, parts):
                    out[oi] = part
                self.stats["chunk_tasks"] += len(keys)
                self.stats["batches"] += 1
                return
            pending = self._submit(client, blocks)
        for round_ in range(1, PINNED_ROUNDS + 1):
            again = self._collect(client, pending, out)
            if not again:
                break
            self.stats["rounds"] += 1
            pending = self._submit(client, again, pinned=round_ < PINNED_ROUNDS)
        else:                                                 # pragma: no cover
            again = self._collect(client, pending, out)
            if again:
                raise RuntimeError(f"DaskSource could not gather {len(again)} chunks of "
                                   f"{self.array.name!r} on {client}")
        self.stats["batches"] += 1

    def prefetch(self, indices: Sequence[Optional[np.ndarray]]) -> None:
        """With a ``dask.distributed`` client as the scheduler: submit the
        tasks of the batch ``indices`` now, so that the cluster takes its
        rows while the caller works; the :meth:`gather` of the same indices
        then only collects them.  A no-op on other schedulers."""
        client = self._client(self._get())
        if client is None:
            return
        if self._ahead is not None:
            self._ahead[3].cancel([f for f, _, _ in self._ahead[2]])
            self._ahead = None
        blocks = self.grid.plan(indices)
        pending = self._submit(client, blocks)
        self._ahead = (tuple(None if i is None else np.array(i) for i in indices),
                       blocks, pending, client)

    def close(self) -> None:
        """Cancel the tasks of a batch prefetched and not gathered."""
        ahead, self._ahead = self._ahead, None
        self._done, self._done_bytes = [], 0
        if ahead is not None:
            ahead[3].cancel([f for f, _, _ in ahead[2]])

    def __repr__(self):
        return (f"DaskSource(shape={self.shape}, dtype={self.dtype}, "
                f"chunks={self.array.chunksize}, name={self.array.name!r})")


def _rows(oi):
    """The length along axis 0 of the block an index into the batch selects."""
    first = oi[0]
    if isinstance(first, slice):
        return first.stop - first.start
    return first.shape[0]


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
