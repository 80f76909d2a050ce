"""The array-level ``Minibatch``: NumPy in, NumPy out, one kernel call a batch."""
from __future__ import annotations

import threading
from time import perf_counter
from typing import Any, Callable, Optional, Sequence, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from ._kernels._gather import BatchIterator, Sampler
from ._memmap import MemmapSource
from ._source import ArraySource, as_source
from ._modes import (EPOCH_ENDS, _SHORT, _check_shard, _epoch_mode, epoch_of, short_indices,
                     short_lengths)
from ._state import load_state, state_of
from ._spec import (check_casting, check_data, parse_batch_size, parse_in_memory_size,
                    seed_key, total_size_of)

__all__ = ["Minibatch"]

# The batch_size grammar: an int (axis 0), or one entry per leading axis:
# an int, (size, seed), None for a whole axis, at most one Ellipsis.
BatchSize = Union[int, Sequence[Any]]
Seed = Union[int, np.random.SeedSequence]
Indices = Tuple[Optional[np.ndarray], ...]


def _build(data, plans, replace, what="data", epochs=0, shard=None, cls=Sampler):
    """Check ``data`` against the per-axis plans and compile a Sampler
    (epochs: the epoch mode, 0 for none; replace is then not used; shard:
    (rank, world) of the first sampled axis, or None; cls: Sampler or a
    subclass)."""
    if data.ndim != len(plans):
        raise ValueError(f"{what} must have ndim={len(plans)}, got ndim={data.ndim} "
                         f"(shape {data.shape})")
    for axis, p in enumerate(plans):
        if p.size is None:
            continue
        n = data.shape[axis]
        if n == 0:
            raise ValueError(f"{what} has an empty sampled axis {axis} (shape {data.shape})")
        if epochs > 1 and p.size > n:
            end = [k for k, v in EPOCH_ENDS.items() if v == epochs][0]
            raise ValueError(
                f"batch_size must be <= {n} (the length of axis {axis}) with "
                f"epoch_end={end!r}, got {p.size} (epoch_end='wrap' lets a batch "
                f"span epochs)")
        if not epochs and not replace and p.size > n:
            raise ValueError(
                f"batch_size must be <= {n} (the length of axis {axis}) when "
                f"replace=False, got {p.size}")
    sizes = tuple(p.size for p in plans)
    keys = tuple(None if p.size is None else seed_key(p.seed) for p in plans)
    if epochs or shard is not None:
        return cls(data, sizes, keys, replace and not epochs, epochs, shard)
    return cls(data, sizes, keys, replace)


def _stub(shape):
    """An array of ``shape`` that holds one byte (zero strides)."""
    return np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), shape, (0,) * len(shape))


class _SourceSampler(Sampler):
    """A Sampler that carries the Source its batches are read from.

    ``kernel``: the kernel gathers (``data`` is a memory-mapped array,
    ``source`` its MemmapSource, which advises the reads); else ``data`` is
    a stub of the source's shape, which the sampler draws indices for, and
    ``source.gather`` reads the rows.  Swapped in as one object (set_value),
    the sampler and its source never mismatch."""
    source = None
    kernel = False
    ahead = None        # the step whose rows were last prefetched


def _build_source(source, plans, replace, what="data", epochs=0, shard=None):
    """A _SourceSampler for ``source``, checked like ``_build`` checks arrays."""
    kernel = type(source) is MemmapSource
    s = _build(source.view if kernel else _stub(source.shape), plans, replace, what, epochs,
               shard, _SourceSampler)
    s.source = source
    s.kernel = kernel
    return s


def _source_of(data, dtype, casting, in_memory_size, what):
    """(Source or None, data) for Minibatch's arguments: in_memory_size
    copies part of the data into memory, so a memory-mapped array or a .npy
    path is read as an array then."""
    source = as_source(data, dtype, casting, what)
    if source is None or in_memory_size is None:
        return source, data
    base = getattr(source, "source", source)
    if isinstance(base, MemmapSource):
        return None, base.array
    raise ValueError(f"in_memory_size needs an array or a memory-mapped file, got "
                     f"{what}={source!r}")


def source_out(s, out, short=None, what="data"):
    """The array a batch of _SourceSampler ``s`` is written into: ``out``
    once checked, else a new one; for a short batch (``short``: its trimmed
    per-axis indices) always a new one, as long as its indices.  ValueError
    for a closed source or an ``out`` that does not fit."""
    if getattr(s.source, "closed", False):
        raise ValueError(f"{what} is closed: {s.source!r}")
    shape = s.shape
    if short is not None:
        return np.empty(tuple(n if ix is None else len(ix) for n, ix in zip(shape, short)),
                        s.source.dtype)
    if out is None:
        return np.empty(shape, s.source.dtype)
    if not (isinstance(out, np.ndarray) and out.shape == shape
            and out.dtype == s.source.dtype and out.flags.c_contiguous
            and out.flags.writeable):
        raise ValueError(
            f"out must be a writeable C-contiguous array of shape {shape} and dtype "
            f"{s.source.dtype}, got "
            + (f"shape {out.shape}, dtype {out.dtype}" if isinstance(out, np.ndarray)
               else repr(type(out))))
    return out


def source_fill(s, step, res, indices):
    """Write batch ``step`` of _SourceSampler ``s`` into ``res`` (from
    ``source_out``) and prefetch the rows of batch ``step + 1``;
    ``indices(s, step)`` gives a batch's per-axis indices (trimmed for a
    short batch).  Returns ``res``."""
    source = s.source
    if s.kernel and res.shape == s.shape:
        if not source.advising:
            # A cached file: the kernel's gather alone, timed for the
            # source to tell when reads reach the device again.
            s.ahead = None
            t0 = perf_counter()
            s.draw(step, res)
            if source.observe(perf_counter() - t0) and step != _LAST_STEP:
                s.ahead = step + 1
                source.prefetch(s.indices(step + 1))
            return res
        source.wait()
        if s.ahead != step:
            source.advise(s.indices(step))
        s.draw(step, res)
    else:
        source.gather(indices(s, step), res)
    if step != _LAST_STEP:
        # Batch step + 1 is known: its reads go on while this one is used.
        s.ahead = step + 1
        source.prefetch(indices(s, step + 1))
    return res


def _index_sampler(s):
    """A Sampler that draws the same indices as ``s`` from an array of the
    same shape that holds one byte: what is kept of replaced data, for
    ``last_indices``, without keeping the data alive."""
    shape = s.data.shape
    stub = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), shape, (0,) * len(shape))
    if s.epochs or s.shard is not None:
        return Sampler(stub, s.sizes, s.keys, s.replace, s.epochs, s.shard)
    return Sampler(stub, s.sizes, s.keys, s.replace)


def _indices_before(before, step):
    """The indices of batch ``step`` from what ``_swap`` keeps of replaced
    data: a Sampler (``_index_sampler``), or the indices themselves."""
    return before.indices(step) if isinstance(before, Sampler) else before


def _member_data(a, dtype, what, casting):
    """An array of a minibatches() group as its Minibatch reads it: its
    Source, or the array (checked and cast)."""
    source = as_source(a, dtype, casting, what)
    return source if source is not None else check_data(a, dtype, what, casting)


def _stored(s):
    """What a pickle keeps of sampler ``s``'s data: its Source, or the array
    (``_compact``)."""
    return s.source if isinstance(s, _SourceSampler) else _compact(s.data)


def _compact(arr):
    """``arr`` for pickling: an array with zero strides (a broadcast view) is
    stored as its distinct elements and its shape, not materialised."""
    if not any(st == 0 and n > 1 for st, n in zip(arr.strides, arr.shape)):
        return arr
    core = arr[tuple(slice(0, 1) if st == 0 else slice(None)
                     for st, n in zip(arr.strides, arr.shape))]
    return ("broadcast", np.ascontiguousarray(core), arr.shape)


def _expand(stored):
    """Inverse of ``_compact`` (a read-only broadcast view)."""
    if isinstance(stored, tuple) and len(stored) == 3 and stored[0] == "broadcast":
        return np.broadcast_to(stored[1], stored[2])
    return stored


def _restore(cls, state):
    """Unpickle an instance of ``cls`` (Minibatch, Minibatches) from ``state``."""
    obj = cls.__new__(cls)
    obj.__setstate__(state)
    return obj


class Minibatch(BatchIterator):
    """Seeded random minibatches of an array, one kernel call per batch.

    Parameters
    ----------
    data : array_like, Source, str or os.PathLike
        The data, any layout (C, F, sliced, negative or zero strides) and any
        dtype without Python objects.  An ndarray is read in place: no copy
        is made unless ``dtype`` asks for a cast or ``in_memory_size`` is set.
        A memory-mapped array, the path of a ``.npy`` file (mapped
        read-only), a :class:`mbcore.Source` or a zarr, h5py or Dask array
        is read through a source (``mbcore.as_source``; docs/sources.md):
        the same batches, each gathered by the source, the next one's rows
        prefetched; a cast to ``dtype`` is then made batch by batch.
    batch_size : int or list of (int | (int, int) | None | Ellipsis), default 128
        PyMC3's grammar.  An int samples that many rows of axis 0.  A list
        gives one entry per leading axis: an int samples that many entries
        (seeded with ``random_seed``), ``(size, seed)`` samples with its own
        seed, None takes the axis whole, and one Ellipsis stands for as many
        whole axes as needed.  Sampled axes are combined as an outer product,
        like ``data[np.ix_(i0, i1, ...)]``.
    dtype : dtype, optional
        Cast the data to this dtype once, at construction (a copy), under
        the ``casting`` rule.
    random_seed : int or numpy.random.SeedSequence, default 42
        Seed of every sampled axis without a seed of its own.
    replace : bool, default True
        Sample with replacement.  When False, no index repeats inside a batch
        and every ordered subset is equally likely.  Not used with
        ``epochs=True`` (which draws without replacement across each epoch);
        ``replace`` then reads False.
    update_shared_f : callable, optional
        Returns a new array for ``update_shared()``.
    in_memory_size : int or list of (int | None | slice | Ellipsis), optional
        Keep only this part of the data, copied into memory (PyMC3's grammar;
        an int k means the first k entries of its axis).
    casting : {'same_kind', 'safe', 'equiv', 'no', 'unsafe'}, default 'same_kind'
        NumPy's rule for the cast to ``dtype`` and for ``set_value``: by
        default float data does not become int (``3e9`` would wrap), while a
        narrower dtype of the same kind (float64 to float32) is allowed, as in
        NumPy's ufuncs.  ``'unsafe'`` allows any cast (PyMC3's behaviour).
    epochs : bool, default False
        Draw in epochs: each epoch of a sampled axis is a random permutation
        of its n entries, keyed by (seed, axis position, epoch), and the
        batches take consecutive positions of the concatenated epochs, so
        every entry appears exactly once an epoch.  O(1) memory; ``seek``,
        ``draw(t)``, threads and pickling work as without epochs.  See
        docs/epochs.md.
    epoch_end : {"wrap", "drop", "short"}, default "wrap"
        With ``epochs=True``, what the batch that reaches an epoch's end
        holds.  "wrap": it runs on into the next epoch (batch t is positions
        ``[t*b, (t+1)*b)`` of the stream, every batch has the same shape, and
        a batch larger than the axis spans several epochs; a batch across a
        boundary may hold an entry twice, once from each epoch).  "drop":
        the last ``n % b`` positions of each epoch are skipped (``n // b``
        batches an epoch).  "short": the last batch of an epoch holds only
        what is left (``ceil(n / b)`` batches an epoch; a short batch is a
        new array, drawn through Python, and ``out`` is not used for it).
        "drop" and "short" need each batch size <= its axis' length.
    shard : (int, int), optional
        ``(rank, world)``: this process draws its share of each global
        batch (the batch one process would draw): positions
        ``[rank * b / world, (rank + 1) * b / world)`` of the first sampled
        axis (batch size b, which world must divide); the other axes whole.
        The shards of the ranks are disjoint and their union is the global
        batch, for every world, so a job can resume on another number of
        workers.  Every mode shards: with ``replace=False`` the global batch
        has no repeats, so neither have the shards nor their union; with
        ``epoch_end="short"`` an epoch's last, short global batch of L rows
        gives rank r positions ``[r * L // world, (r + 1) * L // world)`` (an
        empty batch when that span is empty, for some ranks when L < world).

    Attributes
    ----------
    step : int
        Number of batches drawn so far; the next batch is batch ``step``.
    last_indices : tuple or None
        For batch ``step - 1`` (the last batch drawn, unless ``seek`` moved
        the stream): int64 indices per sampled axis, None per whole axis.
        None while ``step`` is 0.  After ``set_value`` and before the next
        batch, the indices of the last batch drawn from the replaced data;
        after ``seek``, those of batch ``step - 1`` of the current data.
    total_size : int or list
        What to pass as PyMC3's ``total_size``.
    epoch : int, tuple or None
        With ``epochs=True``, the epoch of the next batch (batch ``step``):
        the epoch its first entry comes from, per sampled axis (a tuple when
        several axes are sampled, since their epochs have different
        lengths).  None without epochs.

    Notes
    -----
    Batch ``t`` is a pure function of (seed, axis position, t, data shape,
    batch spec): axis ``k`` draws from the Philox4x64-10 stream keyed by its
    seed, with the axis position and ``t`` in the counter, and maps 32- or
    64-bit words to ``[0, n)`` exactly (Lemire's method).  Hence
    ``seek(t)`` is O(1), a pickled Minibatch continues its stream, and
    Minibatches built separately with the same seed and spec (X and y) pick
    the same rows at every step.  ``next()`` takes its step under the GIL and
    then draws and copies in one ``nogil`` call, so threads may share one:
    every step is drawn exactly once, also while another thread calls
    ``set_value`` (each batch is wholly from the old data or the new).

    Pickling (every protocol) and ``copy.deepcopy`` keep the data, the spec
    and the step; a view with zero strides (``np.broadcast_to``) is stored
    as its distinct elements and comes back as a read-only broadcast view.
    A masked array is refused: pass ``a.filled(value)``.

    Examples
    --------
    >>> import numpy as np
    >>> from mbcore import Minibatch
    >>> data = np.arange(20.0).reshape(10, 2)
    >>> mb = Minibatch(data, batch_size=4, random_seed=1)
    >>> batch = next(mb)
    >>> batch.shape
    (4, 2)
    >>> bool((batch == data[mb.last_indices[0]]).all())
    True
    """

    def __init__(self, data: ArrayLike, batch_size: BatchSize = 128,
                 dtype: DTypeLike = None, random_seed: Seed = 42, replace: bool = True,
                 update_shared_f: Optional[Callable[[], ArrayLike]] = None,
                 in_memory_size: Any = None, casting: str = "same_kind",
                 epochs: bool = False, epoch_end: str = "wrap",
                 shard: Optional[Tuple[int, int]] = None) -> None:
        if update_shared_f is not None and not callable(update_shared_f):
            raise TypeError(f"update_shared_f must be callable, got {update_shared_f!r}")
        if not isinstance(replace, (bool, np.bool_)):
            raise TypeError(f"replace must be a bool, got {type(replace).__name__} {replace!r}")
        self.casting = check_casting(casting)
        self._epochs = _epoch_mode(epochs, epoch_end)
        source, data = _source_of(data, dtype, casting, in_memory_size, "data")
        if source is None:
            arr = check_data(data, dtype, "data", casting)
            self._in_memory = parse_in_memory_size(in_memory_size, arr.ndim)
            if self._in_memory:
                arr = np.array(arr[self._in_memory], order="C")
            ndim = arr.ndim
        else:
            self._in_memory = ()
            ndim = len(source.shape)
        self._plans = parse_batch_size(batch_size, ndim, random_seed)
        self.shard = _check_shard(shard, self._plans)
        self.batch_size = batch_size
        self.random_seed = random_seed
        self.replace = bool(replace) and not self._epochs
        self.epochs = bool(epochs)
        self.epoch_end = epoch_end
        self.update_shared_f = update_shared_f
        self.in_memory_size = in_memory_size
        self._lock = threading.Lock()       # one set_value at a time
        self._group = None                  # the Minibatches this belongs to
        if source is None:
            self._sampler = _build(arr, self._plans, self.replace, epochs=self._epochs,
                                   shard=self.shard)
        else:
            self._sampler = _build_source(source, self._plans, self.replace,
                                          epochs=self._epochs, shard=self.shard)
        self._seek(0)
        if source is not None:
            # Each batch goes through Python: the source gathers it.
            self.__class__ = _SourceMinibatch
        elif self._epochs == _SHORT:
            # Short batches change shape: next() goes through Python.
            self.__class__ = _ShortEpochsMinibatch

    # -- drawing -----------------------------------------------------------
    # __iter__, __next__ and next(out=None) come from BatchIterator (C): no
    # Python frame between next(mb) and the kernel.

    def draw(self, step: int, out: Optional[np.ndarray] = None) -> np.ndarray:
        """Batch ``step`` of the stream, without moving ``self.step``.

        Parameters
        ----------
        step : int
            The batch's position in the stream, in ``[0, 2**64)``.
        out : ndarray, optional
            A C-contiguous array of the batch's shape and dtype to fill.

        Returns
        -------
        ndarray
            The batch: ``out`` when given, else a new array.
        """
        step = self._check_step(step)
        if self._epochs == _SHORT:
            return self._draw_short(self._sampler, step, out)
        return self._sampler.draw(step, out)

    # -- epochs --------------------------------------------------------------
    def _epoch_axes(self, sampler):
        """(axis, n, b) of each sampled axis."""
        shape = sampler.data.shape
        return [(k, shape[k], p.size) for k, p in enumerate(self._plans) if p.size is not None]

    def _epoch_of(self, step, sampler):
        return epoch_of(self._epochs, step, self._epoch_axes(sampler))

    @property
    def epoch(self) -> Union[int, Tuple[int, ...], None]:
        if not self._epochs:
            return None
        step, _, s = self._last()
        return self._epoch_of(step, s)

    def _short_lengths(self, step, sampler):
        return short_lengths(step, len(self._plans), self._epoch_axes(sampler))

    def _indices(self, sampler, step):
        """sampler.indices(step), trimmed to a short batch's entries."""
        indices = sampler.indices(step)
        if self._epochs != _SHORT:
            return indices
        return short_indices(indices, step, self._plans, sampler.data.shape, self.shard)

    def _draw_short(self, sampler, step, out):
        """Batch ``step`` with epoch_end="short": the kernel's when it is
        full, else the rows left in the epoch, gathered here."""
        if self._short_lengths(step, sampler) is None:
            return sampler.draw(step, out)
        batch = sampler.data
        for axis, ix in enumerate(self._indices(sampler, step)):
            if ix is not None:
                batch = np.take(batch, ix, axis=axis)
        return np.ascontiguousarray(batch)

    # step (read-only) comes from BatchIterator.

    def seek(self, step: int) -> None:
        """Make the next batch equal batch ``step`` of a fresh Minibatch.

        Parameters
        ----------
        step : int
            The next batch's position in the stream, in ``[0, 2**64)``.
            ``last_indices`` then tells batch ``step - 1`` of the current data.
        """
        self._seek(self._check_step(step))

    @staticmethod
    def _check_step(step):
        if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)):
            raise TypeError(f"step must be an int, got {type(step).__name__} {step!r}")
        if not 0 <= step < 2 ** 64:
            raise ValueError(f"step must be in [0, 2**64), got {step}")
        return int(step)

    @property
    def last_indices(self) -> Indices:
        step, before, s = self._last()
        if step == 0:
            return None
        if before is not None:
            # Nothing drawn since set_value: the last batch came from the old data.
            if isinstance(before, Sampler):
                return self._indices(before, step - 1)
            return before
        return self._indices(s, step - 1)

    def indices(self, step: int) -> Indices:
        """Per-axis indices of batch ``step`` (None on whole axes)."""
        return self._indices(self._sampler, self._check_step(step))

    # -- data --------------------------------------------------------------
    @property
    def data(self) -> np.ndarray:
        """The array batches are read from (the caller's, when not cast)."""
        return self._sampler.data

    @property
    def dtype(self) -> np.dtype:
        return self._sampler.data.dtype

    @property
    def shape(self) -> Tuple[int, ...]:
        """Shape of every batch."""
        return self._sampler.shape

    @property
    def total_size(self) -> Union[int, list]:
        return total_size_of(self.batch_size, self._plans, self._sampler.data.shape)

    def set_value(self, value: ArrayLike) -> None:
        """Read batches from ``value`` from now on; the step is kept.

        ``value`` must have the same ndim and a dtype that casts to this
        Minibatch's dtype under its ``casting`` rule (``same_kind`` by
        default); sampled axes may change length, unless this Minibatch is a
        member of a ``minibatches()`` group: then they must keep the group's
        lengths (the group's ``set_value`` changes them for every array at
        once).  The replacement is atomic: a batch that another thread draws
        meanwhile is wholly from the old data or the new, and no step is lost
        or drawn twice.  On any error the old data stays in place and usable.
        """
        new = self._prepare(value, "value")
        if self._group is not None:
            self._group._replace_member(self, new)
            return
        with self._lock:
            self._swap(new, _index_sampler(self._sampler))

    def _prepare(self, value, what):
        """The Sampler that set_value(value) would install (all the checks)."""
        arr = check_data(value, self._sampler.data.dtype, what, self.casting)
        if self._in_memory:
            arr = np.array(arr[self._in_memory], order="C")
        return _build(arr, self._plans, self.replace, what, self._epochs, self.shard)

    def update_shared(self) -> None:
        """``set_value(update_shared_f())``."""
        if self.update_shared_f is None:
            raise ValueError("update_shared_f is None: pass update_shared_f=callable "
                             "to Minibatch to use update_shared()")
        self.set_value(self.update_shared_f())

    # -- resumable state -----------------------------------------------------
    def state_dict(self) -> dict:
        """A small JSON-serialisable dict to resume this stream with
        ``load_state_dict``: the step, the mode, the seed's entropy and a
        fingerprint of the spec and the data's shape (not the data)."""
        return state_of(self, [self], self.step)

    def load_state_dict(self, state: dict) -> None:
        """Resume at the state's step.  The state must come from a
        Minibatch of the same spec, seed, mode and data shape: else a
        ValueError, and nothing changes."""
        load_state(self, [self], state, self.seek)

    # -- pickling and display ---------------------------------------------
    def __getstate__(self):
        step, before, s = self._last()
        return {"data": _stored(s), "batch_size": self.batch_size,
                "random_seed": self.random_seed, "replace": self.replace,
                "update_shared_f": self.update_shared_f,
                "in_memory_size": self.in_memory_size, "casting": self.casting,
                "step": step,
                "last_indices": (None if before is None or step == 0
                                 else before if not isinstance(before, Sampler)
                                 else self._indices(before, step - 1)),
                "epochs": self.epochs, "epoch_end": self.epoch_end, "shard": self.shard}

    def __setstate__(self, state):
        self.__init__(_expand(state["data"]), state["batch_size"], None, state["random_seed"],
                      state["replace"], state["update_shared_f"],
                      casting=state.get("casting", "same_kind"),
                      epochs=state.get("epochs", False),
                      epoch_end=state.get("epoch_end", "wrap"), shard=state.get("shard"))
        self.in_memory_size = state["in_memory_size"]
        self._in_memory = parse_in_memory_size(self.in_memory_size, self.data.ndim)
        self.seek(state["step"])
        if state.get("last_indices") is not None:
            self._swap(self._sampler, state["last_indices"])

    def __reduce__(self):
        # Every pickle protocol (0 and 1 cannot pickle a C base class's
        # state by themselves), and copy.copy / copy.deepcopy.
        return _restore, (type(self), self.__getstate__())

    def __repr__(self):
        return (f"Minibatch(shape={self.data.shape}, dtype={self.dtype}, "
                f"batch_size={self.batch_size!r}, random_seed={self.random_seed!r}, "
                f"replace={self.replace}, "
                + (f"epochs=True, epoch_end={self.epoch_end!r}, " if self.epochs else "")
                + (f"shard={self.shard}, " if self.shard is not None else "")
                + f"step={self.step})")


_LAST_STEP = 2 ** 64 - 1


class _ShortEpochsMinibatch(Minibatch):
    """A Minibatch with ``epochs=True, epoch_end="short"`` (its class is
    set by ``Minibatch.__init__``): the last batch of an epoch is shorter,
    so each batch goes through Python to check its shape first."""

    def __next__(self):
        return self.next()

    def next(self, out=None):
        """The next batch; ``out`` is filled and returned for a full batch,
        not used for a short one."""
        # Every next() of this class and set_value take the lock: the step
        # and the Sampler are taken together, each step exactly once.
        with self._lock:
            t, _, s = self._last()
            if t == _LAST_STEP:
                raise OverflowError(
                    f"step is {t} (2**64 - 1), the last of the stream: next() cannot move "
                    "past it; draw(step) draws that batch")
            self._seek(t + 1)
        return self._draw_short(s, t, out)


class _SourceMinibatch(Minibatch):
    """A Minibatch over a Source (its class is set by ``Minibatch.__init__``):
    the kernel draws the indices of a batch as for an array of the source's
    shape, the source gathers the rows (for a memory-mapped array, the
    kernel gathers after the source's advice), and the rows of the next
    batch are prefetched while this one is used.  Each batch goes through
    Python."""

    def __next__(self):
        return self.next()

    def next(self, out=None):
        """The next batch; ``out`` is filled and returned for a full batch
        (not used for a short one, with epoch_end="short")."""
        with self._lock:
            t, _, s = self._last()
            if t == _LAST_STEP:
                raise OverflowError(
                    f"step is {t} (2**64 - 1), the last of the stream: next() cannot move "
                    "past it; draw(step) draws that batch")
            res = self._out(s, t, out)      # checked before the step moves
            self._seek(t + 1)
        return self._fill(s, t, res)

    def draw(self, step: int, out: Optional[np.ndarray] = None) -> np.ndarray:
        step = self._check_step(step)
        s = self._sampler
        return self._fill(s, step, self._out(s, step, out))

    draw.__doc__ = Minibatch.draw.__doc__

    def _out(self, s, step, out):
        """The array batch ``step`` of ``s`` is written into: ``out`` once
        checked, else a new one (always for a short batch)."""
        short = (self._indices(s, step) if self._epochs == _SHORT
                 and self._short_lengths(step, s) is not None else None)
        return source_out(s, out, short)

    def _fill(self, s, step, res):
        """Write batch ``step`` of ``s`` into ``res`` and prefetch the next."""
        return source_fill(s, step, res, self._indices)

    def _draw_short(self, sampler, step, out):
        return self._fill(sampler, step, self._out(sampler, step, out))

    def _prepare(self, value, what):
        """The sampler that set_value(value) would install: ``value`` as a
        source (an array in memory included), checked."""
        source = as_source(value, self.dtype, self.casting, what)
        if source is None:
            source = ArraySource(check_data(value, self.dtype, what, self.casting))
        return _build_source(source, self._plans, self.replace, what, self._epochs,
                             self.shard)

    @property
    def data(self) -> Any:
        """The source batches are read from: the caller's array for a
        memory-mapped one, else the Source."""
        source = self._sampler.source
        return source.array if type(source) in (MemmapSource, ArraySource) else source

    @property
    def dtype(self) -> np.dtype:
        return self._sampler.source.dtype


def __getattr__(name):
    # Minibatches lives in _group.py; pickles that name it here still load.
    if name in ("Minibatches", "minibatches"):
        from . import _group
        return getattr(_group, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
