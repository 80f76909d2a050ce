"""``Minibatches`` and ``minibatches``: aligned arrays that share one draw
per batch."""
from __future__ import annotations

import threading
from typing import Optional, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from ._kernels._gather import Sampler, draw_group
from ._minibatch import (_LAST_STEP, BatchSize, Indices, Minibatch, Seed, _SourceSampler,
                         _expand, _index_sampler, _indices_before, _member_data, _restore,
                         _stored)
from ._modes import _SHORT
from ._spec import check_casting
from ._state import load_state, state_of

__all__ = ["Minibatches", "minibatches"]


class Minibatches:
    """Aligned minibatches of several arrays; see :func:`minibatches`."""

    def __init__(self, arrays, batch_size=128, dtype=None, random_seed=42, replace=True,
                 casting="same_kind", epochs=False, epoch_end="wrap", shard=None):
        if not arrays:
            raise ValueError("minibatches needs at least one array, got none")
        check_casting(casting)
        arrays = [_member_data(a, dtype, f"arrays[{i}]", casting) for i, a in enumerate(arrays)]
        members = [Minibatch(a, batch_size, None, random_seed, replace, casting=casting,
                             epochs=epochs, epoch_end=epoch_end, shard=shard)
                   for a in arrays]
        self._check_lengths([mb._sampler for mb in members], "arrays")
        for mb in members:
            mb._group = self
        self._members = members
        self.batch_size = batch_size
        self.random_seed = random_seed
        self.replace = members[0].replace
        self.casting = casting
        self.epochs = bool(epochs)
        self.epoch_end = epoch_end
        self.shard = members[0].shard
        # The lock makes next(), set_value and seek atomic with each other:
        # next() takes its step and the members' Samplers together.
        self._lock = threading.Lock()
        self._step = 0
        self._before = None       # (step, what is kept of the replaced data)

    @staticmethod
    def _check_lengths(samplers, what):
        lengths = {}
        for i, s in enumerate(samplers):
            for axis, size in enumerate(s.sizes):
                if size is not None:
                    lengths.setdefault(axis, []).append((i, s.data.shape[axis]))
        for axis, seen in lengths.items():
            if len({n for _, n in seen}) > 1:
                raise ValueError(
                    f"{what} must agree in length along sampled axis {axis}, got "
                    + ", ".join(f"{what}[{i}]: {n}" for i, n in seen))

    def __iter__(self):
        return self

    def __next__(self):
        with self._lock:
            t = self._step
            if t == _LAST_STEP:
                raise OverflowError(
                    f"step is {t} (2**64 - 1), the last of the stream: next() cannot move "
                    "past it; draw(step) draws that batch")
            samplers = [mb._sampler for mb in self._members]
            self._step = t + 1
        return self._draw(samplers, t)

    next = __next__

    def draw(self, step: int) -> Tuple[np.ndarray, ...]:
        """The batches of ``step``, without moving ``self.step``.

        Parameters
        ----------
        step : int
            The batches' position in the stream, in ``[0, 2**64)``.

        Returns
        -------
        tuple of ndarray
            One batch per array, drawn with one index draw.
        """
        step = Minibatch._check_step(step)
        with self._lock:
            samplers = [mb._sampler for mb in self._members]
        return self._draw(samplers, step)

    def _draw(self, samplers, t):
        first = self._members[0]
        if any(isinstance(s, _SourceSampler) for s in samplers):
            # The same spec, seed and lengths: each member draws the same
            # indices on its own.  Arrays in memory still share one draw.
            res = [mb._fill(s, t, mb._out(s, t, None)) if isinstance(s, _SourceSampler)
                   else None for mb, s in zip(self._members, samplers)]
            rest = [k for k, r in enumerate(res) if r is None]
            if rest and first._epochs == _SHORT and first._short_lengths(t, samplers[0]):
                for k in rest:
                    res[k] = self._members[k]._draw_short(samplers[k], t, None)
            elif rest:
                for k, r in zip(rest, draw_group([samplers[k] for k in rest], t)):
                    res[k] = r
            return tuple(res)
        if first._epochs == _SHORT and first._short_lengths(t, samplers[0]) is not None:
            return tuple(mb._draw_short(s, t, None) for mb, s in zip(self._members, samplers))
        return draw_group(samplers, t)

    def state_dict(self) -> dict:
        """See ``Minibatch.state_dict``; the arrays' shapes are all in it."""
        return state_of(self, self._members, self.step)

    def load_state_dict(self, state: dict) -> None:
        """See ``Minibatch.load_state_dict``."""
        load_state(self, self._members, state, self.seek)

    @property
    def epoch(self) -> Union[int, Tuple[int, ...], None]:
        """The epoch of the next batch (see ``Minibatch.epoch``)."""
        first = self._members[0]
        if not first._epochs:
            return None
        with self._lock:
            t = self._step
            s = first._sampler
        return first._epoch_of(t, s)

    @property
    def step(self) -> int:
        return self._step

    def seek(self, step: int) -> None:
        """Make the next batches equal those of ``step`` of a fresh group.

        Parameters
        ----------
        step : int
            The next batches' position in the stream, in ``[0, 2**64)``.
            ``last_indices`` then tells batch ``step - 1`` of the current data.
        """
        step = Minibatch._check_step(step)
        with self._lock:
            self._step = step
            self._before = None

    @property
    def members(self) -> tuple:
        """The per-array Minibatches (their own steps are not used; their
        ``set_value`` must keep the group's lengths)."""
        return tuple(self._members)

    @property
    def last_indices(self) -> Tuple[Indices, ...]:
        with self._lock:
            t = self._step
            samplers = [mb._sampler for mb in self._members]
            before = self._before
        if t == 0:
            return None
        if before is not None and before[0] == t:
            # Nothing drawn since set_value: the last batches came from the old data.
            return tuple(_indices_before(b, t - 1) if not isinstance(b, Sampler)
                         else mb._indices(b, t - 1) for mb, b in zip(self._members, before[1]))
        return tuple(mb._indices(s, t - 1) for mb, s in zip(self._members, samplers))

    @property
    def total_size(self) -> Union[int, list]:
        return tuple(mb.total_size for mb in self._members)

    def set_value(self, *arrays: ArrayLike) -> None:
        """Read the batches from ``arrays`` (one per array of the group, in
        order) from now on; the step is kept.

        Each array is checked as its member's ``set_value`` would check it,
        and their lengths along sampled axes must agree; then all are
        replaced at once, atomically with respect to ``next()`` in other
        threads.  On any error every old array stays in place and usable.
        """
        if len(arrays) != len(self._members):
            raise TypeError(f"set_value takes {len(self._members)} arrays (one per array of "
                            f"the group), got {len(arrays)}")
        news = [mb._prepare(a, f"arrays[{i}]")
                for i, (mb, a) in enumerate(zip(self._members, arrays))]
        self._check_lengths(news, "arrays")
        with self._lock:
            olds = [mb._sampler for mb in self._members]
            if self._before is None or self._before[0] != self._step:
                self._before = (self._step, tuple(_index_sampler(s) for s in olds))
            for mb, new in zip(self._members, news):
                mb._swap(new, None)

    def _replace_member(self, member, new):
        """A member's set_value: ``new`` must keep the group's lengths."""
        with self._lock:
            for axis, size in enumerate(new.sizes):
                n = member._sampler.data.shape[axis]
                if size is not None and new.data.shape[axis] != n:
                    raise ValueError(
                        f"value must keep length {n} along sampled axis {axis} (the "
                        f"length of every array of its minibatches() group), got shape "
                        f"{new.data.shape}: the group's set_value(*arrays) replaces "
                        f"them all at once")
            # The same lengths, keys and spec: the same indices as before.
            member._swap(new, None)

    # -- pickling ----------------------------------------------------------
    def __getstate__(self):
        with self._lock:
            step = self._step
            arrays = [mb._sampler for mb in self._members]
            before = self._before
        last = None
        if before is not None and before[0] == step and step > 0:
            last = tuple(_indices_before(b, step - 1) if not isinstance(b, Sampler)
                         else mb._indices(b, step - 1)
                         for mb, b in zip(self._members, before[1]))
        return {"arrays": [_stored(s) for s in arrays], "batch_size": self.batch_size,
                "random_seed": self.random_seed, "replace": self.replace,
                "casting": self.casting, "step": step, "last_indices": last,
                "epochs": self.epochs, "epoch_end": self.epoch_end, "shard": self.shard}

    def __setstate__(self, state):
        self.__init__([_expand(a) for a in state["arrays"]], state["batch_size"], None,
                      state["random_seed"], state["replace"], state["casting"],
                      state.get("epochs", False), state.get("epoch_end", "wrap"),
                      state.get("shard"))
        self._step = state["step"]
        if state["last_indices"] is not None:
            self._before = (self._step, state["last_indices"])

    def __reduce__(self):
        return _restore, (type(self), self.__getstate__())

    def __repr__(self):
        shapes = ", ".join(str(mb.data.shape) for mb in self._members)
        return (f"Minibatches(shapes=[{shapes}], batch_size={self.batch_size!r}, "
                f"random_seed={self.random_seed!r}, replace={self.replace}, "
                + (f"epochs=True, epoch_end={self.epoch_end!r}, " if self.epochs else "")
                + (f"shard={self.shard}, " if self.shard is not None else "")
                + f"step={self.step})")


def minibatches(*arrays: ArrayLike, batch_size: BatchSize = 128, dtype: DTypeLike = None,
                random_seed: Seed = 42, replace: bool = True, casting: str = "same_kind",
                epochs: bool = False, epoch_end: str = "wrap",
                shard: Optional[Tuple[int, int]] = None) -> Minibatches:
    """Aligned minibatches of several arrays: ``next()`` returns a tuple.

    Every array gets the same ``batch_size`` spec and seed, so each sampled
    axis position is drawn from one stream: row i of X and row i of y always
    belong together (with ``epochs=True``, the arrays share one permutation
    an epoch per axis; ``epochs``, ``epoch_end`` and ``shard`` as for
    ``Minibatch``).  Lengths along sampled axes must agree.  Each batch is
    one kernel call that draws the indices once and gathers them from every
    array.  The group has ``step``, ``seek``, ``draw``, ``last_indices`` and
    ``set_value(*arrays)`` (all arrays at once), like ``Minibatch``; it
    pickles and deep-copies, continuing its stream.  A member's own
    ``set_value`` must keep the group's lengths along sampled axes.

    Parameters
    ----------
    *arrays : array_like, Source, str or os.PathLike
        The data (what :class:`Minibatch` takes); they must agree in length
        along the sampled axes.
    batch_size : int or list, default 128
        The grammar of :class:`Minibatch`: an int samples axis 0; a list gives
        one entry per leading axis (an int, ``(size, seed)``, None for a whole
        axis, one Ellipsis for as many whole axes as needed).
    dtype : dtype, optional
        Cast every array to it, under ``casting``.
    random_seed : int or numpy.random.SeedSequence, default 42
        Seed of every sampled axis without a seed of its own.
    replace : bool, default True
        False: no index twice within a batch.
    casting : {'no', 'equiv', 'safe', 'same_kind', 'unsafe'}, default 'same_kind'
        NumPy's casting rule for ``dtype``.
    epochs : bool, default False
        Every row once an epoch, reshuffled each epoch.
    epoch_end : {'wrap', 'drop', 'short'}, default 'wrap'
        What the batch at an epoch's end holds (see :class:`Minibatch`).
    shard : (int, int), optional
        ``(rank, world)``: this worker's disjoint share of each global batch.

    Returns
    -------
    Minibatches
        An iterator of tuples of batches, one per array.

    Examples
    --------
    >>> import numpy as np
    >>> from mbcore import minibatches
    >>> X = np.arange(30.0).reshape(10, 3); y = np.arange(10.0)
    >>> xb, yb = next(minibatches(X, y, batch_size=4))
    >>> bool((xb[:, 0] == 3 * yb).all())
    True
    """
    return Minibatches(arrays, batch_size, dtype, random_seed, replace, casting, epochs,
                       epoch_end, shard)
