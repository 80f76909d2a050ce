"""``BatchSpec``: the one object a graph adapter needs from the core.

A batch spec is what ``Minibatch`` and ``minibatches`` are built from, with
the data left out: the ``batch_size`` grammar, the seed, ``replace``.  Given
arrays, it checks them (dtype, ndim, lengths along shared sampled axes, batch
sizes against ``replace=False``), tells their ``total_size`` and batch shapes,
and draws batch ``step`` of all of them into given outputs in one kernel call.
The step is the whole stream state: batch ``t`` is a pure function of (seed,
spec, data shapes, ``t``), so an adapter keeps one integer as its state.

Data outside memory (a :class:`mbcore.Source`, a ``.npy`` path, a zarr,
h5py or Dask array) are taken wherever arrays are: the indices are drawn
for a zero-stride stand-in of the source's shape and the source gathers
them, as ``Minibatch`` does, so the batches are the same; arrays keep the
kernel's C-level draw.
"""
import functools

import numpy as np

from ._kernels._gather import draw_group
from ._minibatch import (_build, _build_source, _source_of, _SourceSampler, source_fill,
                         source_out)
from ._modes import (EPOCH_ENDS, _check_shard, _epoch_mode, epoch_of, short_indices,
                     short_lengths)
from ._source import Source
from ._spec import check_data, parse_batch_size, parse_in_memory_size, total_size_of
from ._state import check_state, make_state

_WRAP, _DROP, _SHORT = EPOCH_ENDS["wrap"], EPOCH_ENDS["drop"], EPOCH_ENDS["short"]

__all__ = ["BatchSpec"]


def _first(draw, samplers, step, out=None):
    """The one batch of ``draw(samplers, step, [out])``."""
    return draw(samplers, step, None if out is None else [out])[0]


class BatchSpec:
    """A minibatch spec without data: grammar, seed and sampling mode.

    Parameters
    ----------
    batch_size : int or list of (int | (int, int) | None | Ellipsis), default 128
        The grammar of :class:`mbcore.Minibatch`: an int samples axis 0; a
        list gives one entry per leading axis (an int, ``(size, seed)``, None
        for a whole axis, one Ellipsis for as many whole axes as needed).
    random_seed : int or numpy.random.SeedSequence, default 42
        Seed of every sampled axis without a seed of its own.
    replace : bool, default True
        Sample with replacement.  Not used with ``epochs=True`` (``replace``
        then reads False), as for :class:`mbcore.Minibatch`.
    epochs : bool, default False
        Draw in epochs: every entry of a sampled axis once an epoch, each
        epoch a keyed permutation (see :class:`mbcore.Minibatch`).
    epoch_end : {"wrap", "drop", "short"}, default "wrap"
        With ``epochs=True``, what the batch at an epoch's end holds, as for
        :class:`mbcore.Minibatch`.  With "short" the last batch of an epoch
        is shorter than ``batch_shape``; ``draw`` returns it as a new array.
    shard : (int, int), optional
        ``(rank, world)``: positions ``[rank * b / world, (rank + 1) * b /
        world)`` of the first sampled axis of each global batch (batch size
        b, which world must divide); ``batch_shape`` is the shard's.  Every
        mode shards; an epoch's short last batch (L entries) is split the
        same way, ``[rank * L // world, (rank + 1) * L // world)``.

    Notes
    -----
    ``spec.draw(t, *arrays)`` equals ``minibatches(*arrays, batch_size=...,
    random_seed=..., replace=...).draw(t)`` (and, for one array,
    ``Minibatch(array, ...).draw(t)``) for every ``t``.  The spec is parsed
    at construction, so a malformed ``batch_size`` fails there; the number of
    axes it needs is checked against each array.

    ``draw`` keeps the samplers it built for the last arrays it was given and
    reuses them while it is given the same array objects with the same shapes
    and strides; the samplers hold references to those arrays, so an id cannot
    be reused by another object meanwhile.

    Examples
    --------
    >>> import numpy as np
    >>> from mbcore import BatchSpec, minibatches
    >>> X = np.arange(30.0).reshape(10, 3); y = np.arange(10.0)
    >>> spec = BatchSpec(4, random_seed=1)
    >>> xb, yb = spec.draw(0, X, y)
    >>> bool((xb[:, 0] == 3 * yb).all())
    True
    >>> all((a == b).all() for a, b in zip(spec.draw(5, X, y),
    ...                                    minibatches(X, y, batch_size=4, random_seed=1).draw(5)))
    True
    >>> spec.total_size(X.shape), spec.batch_shape(X.shape)
    (10, (4, 3))
    """

    __slots__ = ("batch_size", "random_seed", "replace", "epochs", "epoch_end", "shard",
                 "_mode", "_plans", "_samplers")

    def __init__(self, batch_size=128, random_seed=42, replace=True, epochs=False,
                 epoch_end="wrap", shard=None):
        if not isinstance(replace, (bool, np.bool_)):
            raise TypeError(f"replace must be a bool, got {type(replace).__name__} {replace!r}")
        self._mode = _epoch_mode(epochs, epoch_end)
        self.batch_size = batch_size
        self.random_seed = random_seed
        self.replace = bool(replace) and not self._mode
        self.epochs = bool(epochs)
        self.epoch_end = epoch_end
        self._plans = {}
        self._samplers = ((), (), False)
        # Parse once with the fewest axes the spec can describe: every error
        # of the grammar itself is raised here, not at the first array.
        plans = self.plans(self.min_ndim)
        # The shard splits the first sampled axis, whose batch size is the
        # first int of the grammar whatever the number of axes.
        self.shard = _check_shard(shard, plans)

    # -- the grammar ---------------------------------------------------------
    @property
    def min_ndim(self):
        """The fewest axes an array needs for this spec."""
        if isinstance(self.batch_size, (list, tuple)):
            return max(1, sum(1 for t in self.batch_size if t is not Ellipsis))
        return 1

    def plans(self, ndim):
        """One ``(size, seed)`` per axis of an ``ndim``-d array: the batch size
        and seed of a sampled axis, ``(None, None)`` for a whole axis."""
        plans = self._plans.get(ndim)
        if plans is None:
            plans = parse_batch_size(self.batch_size, ndim, self.random_seed)
            self._plans[ndim] = plans
        return plans

    def sampled_axes(self, ndim):
        """The sampled axes of an ``ndim``-d array, in order."""
        return tuple(k for k, p in enumerate(self.plans(ndim)) if p.size is not None)

    # -- values --------------------------------------------------------------
    def prepare(self, value, dtype=None, what="data", *, casting="unsafe", ndim=None,
                in_memory_size=None):
        """The array or :class:`mbcore.Source` batches of ``value`` are read
        from, checked.

        ``value`` itself when it is an ndarray (a memory-mapped one included:
        the kernel reads it in place) and neither a ``dtype`` cast nor an
        ``in_memory_size`` cut is asked for.  Anything else that
        :func:`mbcore.as_source` reads as a source (a Source, a ``.npy``
        path, a zarr, h5py or Dask array) gives that Source: cast batch by
        batch to ``dtype`` under ``casting``; with ``in_memory_size``, only a
        ``.npy`` path, whose part is copied into memory.  Raises TypeError for
        Python objects or a cast that ``casting`` (NumPy's rule) forbids,
        ValueError for a 0-d value, another ndim than ``ndim`` (when given),
        too few axes for the spec, an empty sampled axis, or (with
        ``replace=False``) a batch larger than its axis; ``what`` names the
        value in the message.

        ``in_memory_size`` keeps only that part of the value, as for
        :class:`mbcore.Minibatch` (a C-contiguous copy; an int k means the
        first k entries of its axis); the other checks apply to the part
        kept.  ``dtype=x.dtype, casting="same_kind", ndim=x.ndim`` with the
        ``in_memory_size`` of ``x`` checks a value as ``x.set_value`` does.
        """
        if not isinstance(value, np.ndarray):
            # A Source, a .npy path, a zarr, h5py or Dask array: read through
            # its Source (a memory-mapped file cut by in_memory_size is read
            # as an array, as by Minibatch).
            source, value = _source_of(value, dtype, casting, in_memory_size, what)
            if source is not None:
                if ndim is not None and len(source.shape) != ndim:
                    raise ValueError(f"{what} must have ndim={ndim}, got ndim="
                                     f"{len(source.shape)} (shape {source.shape})")
                self._check_shape(source.shape, what)
                return source
        arr = check_data(value, dtype, what, casting)
        if ndim is not None and arr.ndim != ndim:
            raise ValueError(f"{what} must have ndim={ndim}, got ndim={arr.ndim} "
                             f"(shape {arr.shape})")
        index = parse_in_memory_size(in_memory_size, arr.ndim)
        if index:
            arr = np.array(arr[index], order="C")
        self._check_shape(arr.shape, what)
        return arr

    def _check_shape(self, shape, what):
        """The checks of ``prepare`` that a value's shape alone decides."""
        if len(shape) < self.min_ndim:
            raise ValueError(f"{what} must have at least ndim={self.min_ndim} for "
                             f"batch_size={self.batch_size!r}, got ndim={len(shape)} "
                             f"(shape {shape})")
        for axis, p in enumerate(self.plans(len(shape))):
            if p.size is None:
                continue
            n = shape[axis]
            if n == 0:
                raise ValueError(f"{what} has an empty sampled axis {axis} (shape {shape})")
            if self._mode in (_DROP, _SHORT) and p.size > n:
                raise ValueError(
                    f"batch_size must be <= {n} (the length of axis {axis} of {what}) with "
                    f"epoch_end={self.epoch_end!r}, got {p.size} (epoch_end='wrap' lets a "
                    f"batch span epochs)")
            if not self._mode and not self.replace and p.size > n:
                raise ValueError(
                    f"batch_size must be <= {n} (the length of axis {axis} of {what}) when "
                    f"replace=False, got {p.size}")

    def check_aligned(self, shapes, names=None):
        """Raise ValueError unless the shapes agree in length along every
        sampled axis (the condition for one draw to pick the same rows of
        all of them).  ``names`` label the arrays in the message."""
        shapes = [tuple(s) for s in shapes]
        if names is None:
            names = [f"arrays[{i}]" for i in range(len(shapes))]
        lengths = {}
        for name, shape in zip(names, shapes):
            for axis in self.sampled_axes(len(shape)):
                lengths.setdefault(axis, []).append((name, shape[axis]))
        for axis, seen in sorted(lengths.items()):
            if len({n for _, n in seen}) > 1:
                raise ValueError(
                    f"all variables must have the same length along sampled axis {axis}, got "
                    + ", ".join(f"{name}: {n}" for name, n in seen))

    def total_size(self, shape):
        """PyMC's ``total_size`` for an array of this shape: an int for an
        int spec, else a list with the full length of each sampled axis, None
        for a listed whole axis and the Ellipsis kept."""
        shape = tuple(shape)
        return total_size_of(self.batch_size, self.plans(len(shape)), shape)

    def sizes(self, ndim):
        """Per axis of an ``ndim``-d array, the batch's length on a sampled
        axis (this shard's share on the first one) and None on a whole axis."""
        out = [p.size for p in self.plans(ndim)]
        if self.shard is not None:
            first = next(k for k, b in enumerate(out) if b is not None)
            out[first] //= self.shard[1]
        return tuple(out)

    def batch_shape(self, shape):
        """The shape of every batch of an array of this shape (with
        ``epoch_end="short"``, of every full batch)."""
        shape = tuple(shape)
        return tuple(n if b is None else b for n, b in zip(shape, self.sizes(len(shape))))

    def _axes(self, shape):
        """(axis, n, b) of each sampled axis of an array of this shape."""
        return [(k, shape[k], p.size) for k, p in enumerate(self.plans(len(shape)))
                if p.size is not None]

    def _short_lengths(self, step, shape):
        return short_lengths(step, len(shape), self._axes(shape))

    def epoch(self, step, shape):
        """With ``epochs=True``, the epoch batch ``step`` of an array of this
        shape starts in: an int, or a tuple with one per sampled axis when
        several are sampled (as ``mbcore.Minibatch.epoch``).  None without
        epochs."""
        if not self._mode:
            return None
        step = self.check_step(step)
        return epoch_of(self._mode, step, self._axes(tuple(shape)))

    # -- resumable state -----------------------------------------------------
    def state_dict(self, step, *shapes):
        """The state dict of a stream at ``step`` over arrays of these shapes,
        in the format of ``mbcore.Minibatch.state_dict()`` (one shape) or of
        ``minibatches(...).state_dict()`` (several): a state moves freely
        between the core and an adapter built on this spec."""
        if not shapes:
            raise ValueError("state_dict needs the shape of at least one array, got none")
        shapes = [tuple(int(n) for n in s) for s in shapes]
        kind = "mbcore.Minibatch" if len(shapes) == 1 else "mbcore.Minibatches"
        return make_state(kind, self.check_step(step), self.replace, self.epochs,
                          self.epoch_end, self.random_seed, self.plans(len(shapes[0])),
                          shapes, self.shard)

    def check_state(self, state, *shapes):
        """The step of ``state``, after checking that it may be loaded into a
        stream of this spec over arrays of these shapes (as
        ``mbcore.Minibatch.load_state_dict`` checks: version, format, mode,
        seed, spec and shapes; not the shard).  TypeError or ValueError
        otherwise."""
        check_state(state, self.state_dict(0, *shapes))
        return state["step"]

    # -- drawing -------------------------------------------------------------
    #: The largest value of a graph's int64 step variable, which no batch can
    #: be drawn from: batch ``t`` leaves ``t + 1`` in the variable.
    LAST_GRAPH_STEP = 2 ** 63 - 1

    @classmethod
    def check_graph_step(cls, step):
        """``step``, the value of a graph's int64 step variable, as an int
        that a batch can be drawn from: in ``[0, 2**63 - 1)``, so that
        ``step + 1``, the variable's next value, is an int64 too.
        ValueError for a negative step, OverflowError from ``2**63 - 1`` on.
        """
        t = int(step)
        if t < 0:
            raise ValueError(f"the minibatch step must be >= 0, got {t}")
        if t >= cls.LAST_GRAPH_STEP:
            raise OverflowError(
                f"the minibatch step is {t}; an int64 step variable draws no batch from "
                f"2**63 - 1 = {cls.LAST_GRAPH_STEP} on (the next step would not fit it): "
                f"set it to an earlier step")
        return t

    @staticmethod
    def check_step(step):
        """``step`` as an int in ``[0, 2**64)``; TypeError or ValueError otherwise."""
        if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)):
            raise TypeError(f"step must be an int, got {type(step).__name__} {step!r}")
        if not 0 <= step < 2 ** 64:
            raise ValueError(f"step must be in [0, 2**64), got {step}")
        return int(step)

    def _samplers_for(self, arrays):
        # The cache holds the samplers with the shapes and strides their
        # arrays had when they were built: an array reshaped in place (the
        # same object) needs new samplers.  A source's entry is the object
        # it was given as (a source's shape does not change).
        samplers, layouts, _ = self._samplers
        if len(samplers) == len(arrays) and all(
                (s.data is a and layout == (a.shape, a.strides)) or layout is a
                for s, layout, a in zip(samplers, layouts, arrays)):
            return samplers
        values = [self.prepare(a, what=f"arrays[{i}]") for i, a in enumerate(arrays)]
        if len(values) > 1:
            self.check_aligned([a.shape for a in values])
        samplers = tuple(
            _build_source(a, self.plans(a.ndim), self.replace, f"arrays[{i}]", self._mode,
                          self.shard) if isinstance(a, Source)
            else _build(a, self.plans(a.ndim), self.replace, f"arrays[{i}]", self._mode,
                        self.shard)
            for i, a in enumerate(values))
        sourced = any(isinstance(a, Source) for a in values)
        self._samplers = (samplers, tuple(g if isinstance(a, Source) else (a.shape, a.strides)
                                          for g, a in zip(arrays, values)), sourced)
        return samplers

    def draw(self, step, *arrays, out=None):
        """Batch ``step`` of each array, as a tuple, in one kernel call.

        Parameters
        ----------
        step : int
            The batch's position in the stream, in ``[0, 2**64)``.
        *arrays : ndarray, Source, str or os.PathLike
            The data; they must agree in length along shared sampled axes.
            Anything :meth:`prepare` reads as a Source (a ``.npy`` path, a
            zarr, h5py or Dask array) is gathered by that source, at the
            indices the kernel draws for a stand-in of its shape: the batch
            equals that of the array in memory.
        out : sequence of (ndarray | None), optional
            One entry per array: a C-contiguous array of the batch's shape
            and dtype to fill, or None for a new one.

        Returns
        -------
        tuple of ndarray
            The batches; row ``i`` of every batch comes from the same
            position of the sampled axes.
        """
        if not arrays:
            raise ValueError("draw needs at least one array, got none")
        samplers = self._samplers_for(arrays)
        step = self.check_step(step)
        if self._samplers[2]:
            return self._draw_sources(samplers, step, out)
        if self._mode == _SHORT:
            return self._draw_short(samplers, step, out)
        return draw_group(samplers, step, out)

    def _draw_short(self, samplers, step, out=None):
        """Batch ``step`` with epoch_end="short": the kernel's when it is
        full, else the entries left in the epoch, gathered here (as
        ``mbcore.Minibatch`` does)."""
        if self._short_lengths(step, samplers[0].data.shape) is None:
            return draw_group(samplers, step, out)
        res = []
        for s in samplers:
            batch = s.data
            for axis, ix in enumerate(self._source_indices(s, step)):
                if ix is not None:
                    batch = np.take(batch, ix, axis=axis)
            res.append(np.ascontiguousarray(batch))
        return tuple(res)

    def _source_indices(self, s, step):
        """The per-axis indices of batch ``step`` of sampler ``s`` (trimmed
        for a short batch)."""
        indices = s.indices(step)
        if self._mode != _SHORT:
            return indices
        shape = s.data.shape
        return short_indices(indices, step, self.plans(len(shape)), shape, self.shard)

    def _draw_sources(self, samplers, step, out=None):
        """Batch ``step`` when some data are Sources: each source gathers
        the rows its sampler's indices select (the indices every member of
        the group draws alike) and prefetches those of batch ``step + 1``;
        the arrays in memory share one kernel call, as ``minibatches`` of
        sources does."""
        m = len(samplers)
        outs = [None] * m if out is None else list(out)
        if len(outs) != m:
            raise ValueError(f"out must have one entry per array ({m}), got {len(outs)}")
        short = (self._mode == _SHORT
                 and self._short_lengths(step, samplers[0].data.shape) is not None)
        res = [None] * m
        rest = []
        for k, s in enumerate(samplers):
            if type(s) is _SourceSampler:
                trimmed = self._source_indices(s, step) if short else None
                res[k] = source_fill(s, step, source_out(s, outs[k], trimmed, f"arrays[{k}]"),
                                     self._source_indices)
            else:
                rest.append(k)
        if rest:
            sub = [samplers[k] for k in rest]
            sub_out = [outs[k] for k in rest]
            got = self._draw_short(sub, step, sub_out) if short else draw_group(sub, step,
                                                                                 sub_out)
            for k, b in zip(rest, got):
                res[k] = b
        return tuple(res)

    def bind(self, *arrays):
        """``draw`` for these arrays, checked once, as a C-level callable.

        Returns ``f`` with ``f(step, out=None)`` equal to
        ``self.draw(step, *arrays, out=out)``, without the per-call checks
        of ``draw`` in Python: ``step`` must be an int in ``[0, 2**64)``
        (OverflowError otherwise), ``out`` None or one entry per array.  A
        call costs about a third of ``draw``'s at small batches (0.29 against
        2.4 us at 128 rows of float64, 2-vCPU AMD EPYC Zen 5).  The arrays
        are read when ``f`` is called: changes in place are seen; a new
        array needs a new ``bind``.  When a Source is among the data, ``f``
        is a Python callable that gathers through the sources (see
        ``draw``).
        """
        if not arrays:
            raise ValueError("bind needs at least one array, got none")
        samplers = self._samplers_for(arrays)
        if self._samplers[2]:
            return functools.partial(self._draw_sources, samplers)
        if self._mode == _SHORT:
            return functools.partial(self._draw_short, samplers)
        return functools.partial(draw_group, samplers)

    def bind_one(self, array):
        """``bind`` for one array, whose callable returns the batch itself.

        Returns ``f`` with ``f(step, out=None)`` equal to
        ``self.draw(step, array, out=[out])[0]``, checked as ``bind`` checks.
        For a single array it skips ``bind``'s group draw: 0.20-0.21 against
        0.34-0.38 us a call at 128 rows of float64 from 1e6 (2-vCPU AMD EPYC
        Zen 5 VM at load average 5, NumPy 1.23.5 and 2.x, best of 41
        interleaved rounds, three runs each); at load average 7, 0.24 against
        1.9 us.  For a Source, ``f`` gathers through it in Python.
        """
        samplers = self._samplers_for((array,))
        if self._samplers[2]:
            return functools.partial(_first, self._draw_sources, samplers)
        if self._mode == _SHORT:
            return functools.partial(_first, self._draw_short, samplers)
        return samplers[0].draw

    def indices(self, step, shape):
        """Per-axis int64 indices of batch ``step`` for an array of this
        shape (None on whole axes)."""
        shape = tuple(shape)
        # Indices depend on the shape only: a zero-stride view stands in for data.
        stand_in = np.lib.stride_tricks.as_strided(np.empty(1, np.uint8), shape,
                                                   (0,) * len(shape))
        sampler = _build(stand_in, self.plans(len(shape)), self.replace, "shape", self._mode,
                         self.shard)
        step = self.check_step(step)
        indices = sampler.indices(step)
        if self._mode != _SHORT:
            return indices
        return short_indices(indices, step, self.plans(len(shape)), shape, self.shard)

    # -- identity ------------------------------------------------------------
    def _key(self):
        return (repr(self.batch_size), repr(self.random_seed), self.replace, self.epochs,
                self.epoch_end, self.shard)

    def __eq__(self, other):
        return type(other) is type(self) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __reduce__(self):
        return (type(self), (self.batch_size, self.random_seed, self.replace, self.epochs,
                             self.epoch_end, self.shard))

    def __repr__(self):
        return (f"BatchSpec(batch_size={self.batch_size!r}, "
                f"random_seed={self.random_seed!r}, replace={self.replace}"
                + (f", epochs=True, epoch_end={self.epoch_end!r}" if self.epochs else "")
                + (f", shard={self.shard}" if self.shard is not None else "") + ")")
