"""The array-level ``Minibatch``: NumPy in, NumPy out, one kernel call a batch."""
import threading

import numpy as np

from ._kernels._gather import BatchIterator, Sampler, draw_group
from ._spec import (check_data, parse_batch_size, parse_in_memory_size, seed_key,
                    total_size_of)

__all__ = ["Minibatch", "Minibatches", "minibatches"]


def _build(data, plans, replace, what="data"):
    """Check ``data`` against the per-axis plans and compile a Sampler."""
    if data.ndim != len(plans):
        raise ValueError(f"{what} must have ndim={len(plans)}, got ndim={data.ndim} "
                         f"(shape {data.shape})")
    for axis, p in enumerate(plans):
        if p.size is None:
            continue
        n = data.shape[axis]
        if n == 0:
            raise ValueError(f"{what} has an empty sampled axis {axis} (shape {data.shape})")
        if not replace and p.size > n:
            raise ValueError(
                f"batch_size must be <= {n} (the length of axis {axis}) when "
                f"replace=False, got {p.size}")
    sizes = tuple(p.size for p in plans)
    keys = tuple(None if p.size is None else seed_key(p.seed) for p in plans)
    return Sampler(data, sizes, keys, replace)


class Minibatch(BatchIterator):
    """Seeded random minibatches of an array, one kernel call per batch.

    Parameters
    ----------
    data : array_like
        The data, any layout (C, F, sliced, negative or zero strides) and any
        dtype without Python objects.  An ndarray is read in place: no copy
        is made unless ``dtype`` asks for a cast or ``in_memory_size`` is set.
    batch_size : int or list of (int | (int, int) | None | Ellipsis), default 128
        PyMC3's grammar.  An int samples that many rows of axis 0.  A list
        gives one entry per leading axis: an int samples that many entries
        (seeded with ``random_seed``), ``(size, seed)`` samples with its own
        seed, None takes the axis whole, and one Ellipsis stands for as many
        whole axes as needed.  Sampled axes are combined as an outer product,
        like ``data[np.ix_(i0, i1, ...)]``.
    dtype : dtype, optional
        Cast the data to this dtype once, at construction (a copy).
    random_seed : int or numpy.random.SeedSequence, default 42
        Seed of every sampled axis without a seed of its own.
    replace : bool, default True
        Sample with replacement.  When False, no index repeats inside a batch
        and every ordered subset is equally likely.
    update_shared_f : callable, optional
        Returns a new array for ``update_shared()``.
    in_memory_size : int or list of (int | None | slice | Ellipsis), optional
        Keep only this part of the data, copied into memory (PyMC3's grammar;
        an int k means the first k entries of its axis).

    Attributes
    ----------
    step : int
        Number of batches drawn so far; the next batch is batch ``step``.
    last_indices : tuple or None
        For batch ``step - 1`` (the last batch drawn, unless ``seek`` moved
        the stream): int64 indices per sampled axis, None per whole axis.
        None while ``step`` is 0.
    total_size : int or list
        What to pass as PyMC3's ``total_size``.

    Notes
    -----
    Batch ``t`` is a pure function of (seed, axis position, t, data shape,
    batch spec): axis ``k`` draws from the Philox4x64-10 stream keyed by its
    seed, with the axis position and ``t`` in the counter, and maps 32- or
    64-bit words to ``[0, n)`` exactly (Lemire's method).  Hence
    ``seek(t)`` is O(1), a pickled Minibatch continues its stream, and
    Minibatches built separately with the same seed and spec (X and y) pick
    the same rows at every step.  ``next()`` takes its step under the GIL and
    then draws and copies in one ``nogil`` call, so threads may share one.

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

    def __init__(self, data, batch_size=128, dtype=None, random_seed=42, replace=True,
                 update_shared_f=None, in_memory_size=None):
        if update_shared_f is not None and not callable(update_shared_f):
            raise TypeError(f"update_shared_f must be callable, got {update_shared_f!r}")
        if not isinstance(replace, (bool, np.bool_)):
            raise TypeError(f"replace must be a bool, got {type(replace).__name__} {replace!r}")
        arr = check_data(data, dtype)
        self._in_memory = parse_in_memory_size(in_memory_size, arr.ndim)
        if self._in_memory:
            arr = np.array(arr[self._in_memory], order="C")
        self._plans = parse_batch_size(batch_size, arr.ndim, random_seed)
        self.batch_size = batch_size
        self.random_seed = random_seed
        self.replace = bool(replace)
        self.update_shared_f = update_shared_f
        self.in_memory_size = in_memory_size
        self._lock = threading.Lock()
        self._before_set_value = None
        self._sampler = _build(arr, self._plans, self.replace)

    # -- drawing -----------------------------------------------------------
    # __iter__, __next__ and next(out=None) come from BatchIterator (C): no
    # Python frame between next(mb) and the kernel.

    def draw(self, step, out=None):
        """Batch ``step`` of the stream, without moving ``self.step``."""
        return self._sampler.draw(self._check_step(step), out)

    @property
    def step(self):
        return self._sampler.step

    def seek(self, step):
        """Make the next batch equal batch ``step`` of a fresh Minibatch."""
        self._sampler.step = self._check_step(step)

    @staticmethod
    def _check_step(step):
        if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)):
            raise TypeError(f"step must be an int, got {type(step).__name__} {step!r}")
        if not 0 <= step < 2 ** 64:
            raise ValueError(f"step must be in [0, 2**64), got {step}")
        return int(step)

    @property
    def last_indices(self):
        s = self._sampler
        if s.step == 0:
            return None
        prev = self._before_set_value
        if prev is not None and prev[0] == s.step:
            # Nothing drawn since set_value: the last batch came from the old data.
            return prev[1]
        return s.indices(s.step - 1)

    def indices(self, step):
        """Per-axis indices of batch ``step`` (None on whole axes)."""
        return self._sampler.indices(self._check_step(step))

    # -- data --------------------------------------------------------------
    @property
    def data(self):
        """The array batches are read from (the caller's, when not cast)."""
        return self._sampler.data

    @property
    def dtype(self):
        return self._sampler.data.dtype

    @property
    def shape(self):
        """Shape of every batch."""
        return self._sampler.shape

    @property
    def total_size(self):
        return total_size_of(self.batch_size, self._plans, self._sampler.data.shape)

    def set_value(self, value):
        """Read batches from ``value`` from now on; the step is kept.

        ``value`` must have the same ndim and a dtype that casts to this
        Minibatch's dtype under ``same_kind`` rules; sampled axes may change
        length.  On any error the old data stays in place and usable.
        """
        old = self._sampler
        arr = np.asarray(value)
        if arr.dtype.hasobject or not np.can_cast(arr.dtype, old.data.dtype, "same_kind"):
            raise TypeError(f"value must have a dtype that casts to {old.data.dtype}, "
                            f"got {arr.dtype}")
        arr = check_data(arr.astype(old.data.dtype, copy=False), None, "value")
        if self._in_memory:
            arr = np.array(arr[self._in_memory], order="C")
        new = _build(arr, self._plans, self.replace, "value")
        with self._lock:
            new.step = old.step
            # The old data's last indices, not the old Sampler (which would
            # keep the old array alive).
            self._before_set_value = (old.step, old.indices(old.step - 1) if old.step else None)
            self._sampler = new

    def update_shared(self):
        """``set_value(update_shared_f())``."""
        if self.update_shared_f is None:
            raise ValueError("update_shared_f is None: pass update_shared_f=callable "
                             "to Minibatch to use update_shared()")
        self.set_value(self.update_shared_f())

    # -- pickling and display ---------------------------------------------
    def __getstate__(self):
        return {"data": self.data, "batch_size": self.batch_size,
                "random_seed": self.random_seed, "replace": self.replace,
                "update_shared_f": self.update_shared_f,
                "in_memory_size": self.in_memory_size, "step": self.step}

    def __setstate__(self, state):
        self.__init__(state["data"], state["batch_size"], None, state["random_seed"],
                      state["replace"], state["update_shared_f"])
        self.in_memory_size = state["in_memory_size"]
        self._in_memory = parse_in_memory_size(self.in_memory_size, self.data.ndim)
        self.seek(state["step"])

    def __repr__(self):
        return (f"Minibatch(shape={self.data.shape}, dtype={self.dtype}, "
                f"batch_size={self.batch_size!r}, random_seed={self.random_seed!r}, "
                f"replace={self.replace}, step={self.step})")


class Minibatches:
    """Aligned minibatches of several arrays; see :func:`minibatches`."""

    def __init__(self, arrays, batch_size=128, dtype=None, random_seed=42, replace=True):
        if not arrays:
            raise ValueError("minibatches needs at least one array, got none")
        self._members = [Minibatch(a, batch_size, dtype, random_seed, replace)
                         for a in arrays]
        lengths = {}
        for i, mb in enumerate(self._members):
            for axis, p in enumerate(mb._plans):
                if p.size is not None:
                    lengths.setdefault(axis, []).append((i, mb.data.shape[axis]))
        for axis, seen in lengths.items():
            if len({n for _, n in seen}) > 1:
                raise ValueError(
                    f"arrays must agree in length along sampled axis {axis}, got "
                    + ", ".join(f"arrays[{i}]: {n}" for i, n in seen))
        self._lock = threading.Lock()
        self._step = 0

    def __iter__(self):
        return self

    def __next__(self):
        with self._lock:
            t = self._step
            self._step = t + 1
        return draw_group([mb._sampler for mb in self._members], t)

    next = __next__

    def draw(self, step):
        """The batches of ``step``, without moving ``self.step``."""
        return draw_group([mb._sampler for mb in self._members], Minibatch._check_step(step))

    @property
    def step(self):
        return self._step

    def seek(self, step):
        self._step = Minibatch._check_step(step)

    @property
    def members(self):
        """The per-array Minibatches (their own steps are not used)."""
        return tuple(self._members)

    @property
    def last_indices(self):
        if self._step == 0:
            return None
        return tuple(mb.indices(self._step - 1) for mb in self._members)

    @property
    def total_size(self):
        return tuple(mb.total_size for mb in self._members)


def minibatches(*arrays, batch_size=128, dtype=None, random_seed=42, replace=True):
    """Aligned minibatches of several arrays: ``next()`` returns a tuple.

    Every array gets the same ``batch_size`` spec and seed, so each sampled
    axis position is drawn from one stream: row i of X and row i of y always
    belong together.  Lengths along sampled axes must agree.  Each batch is
    one kernel call that draws the indices once and gathers them from every
    array.

    Examples
    --------
    >>> import numpy as np
    >>> from mbcore import minibatches
    >>> X = np.arange(30.0).reshape(10, 3); y = np.arange(10.0)
    >>> xb, yb = next(minibatches(X, y, batch_size=4))
    >>> bool((xb[:, 0] == 3 * yb).all())
    True
    """
    return Minibatches(arrays, batch_size, dtype, random_seed, replace)
