"""The Minibatch variables: ``Minibatch``, ``minibatches``, ``align_minibatches``.

A group of variables (one ``Minibatch``, or the arrays of one
``minibatches`` call) is the batch outputs of one ``MinibatchOp`` node over
shared variables holding the data, with one shared int64 state whose
``default_update`` is the node's ``state + 1`` output.  Every check of the
data, the spec and the state is ``mbcore.BatchSpec``'s.
"""
import weakref
from copy import copy

import numpy as np

from mbcore import BatchSpec, Source

from .._theano_compat import import_theano

theano = import_theano()

import theano.tensor as tt  # noqa: E402
from theano.graph.basic import Apply  # noqa: E402

from ._op import MinibatchOp  # noqa: E402
from ._source_op import SourceOp, check_source_dtype  # noqa: E402

__all__ = ["Minibatch", "minibatches", "align_minibatches"]

# Live Minibatch variables, for align_minibatches() without arguments.
_LIVE = weakref.WeakSet()


def _prepare(spec, data, dtype, in_memory_size, what):
    """The array a Minibatch reads, checked by ``spec``: cut to
    ``in_memory_size``, cast to ``dtype``, or to floatX when the data is
    float and no dtype is given (PyMC3's rule); not copied otherwise.  Data
    that ``mbcore.as_source`` reads as a source (a ``.npy`` path, an h5py
    dataset, a Source) give their Source, cast batch by batch to ``dtype``
    when it is given; a float source of another dtype than floatX needs
    that ``dtype``: its cast is not made unasked."""
    arr = spec.prepare(data, dtype, what, in_memory_size=in_memory_size)
    if isinstance(arr, Source):
        name = check_source_dtype(arr, what)
        if dtype is None and arr.dtype.kind == "f" and name != theano.config.floatX:
            raise TypeError(
                f"{what} is a source of dtype {name} and theano.config.floatX is "
                f"{theano.config.floatX}: pass dtype={theano.config.floatX!r} to cast its "
                f"batches, or dtype={name!r} to keep them (got {arr!r})")
        return arr
    if dtype is None and arr.dtype.kind == "f" and arr.dtype != theano.config.floatX:
        arr = spec.prepare(arr, theano.config.floatX, what)
    return arr


def _patterns(spec, broadcastable, shape):
    """(batch pattern, shared-data pattern) for a user's ``broadcastable``."""
    nd = len(shape)
    if broadcastable is None:
        return (False,) * nd, (False,) * nd
    out = tuple(bool(b) for b in broadcastable)
    if len(out) != nd:
        raise ValueError(f"broadcastable must have {nd} entries (the data's ndim), got "
                         f"{broadcastable!r}")
    batch = spec.batch_shape(shape)
    for k, (length, b) in enumerate(zip(batch, out)):
        if b and length != 1:
            raise ValueError(f"broadcastable[{k}] is True but axis {k} of every batch "
                             f"has length {length}: broadcastable={broadcastable!r}")
    return out, tuple(b and size is None for size, b in zip(spec.sizes(nd), out))


class Minibatch(tt.TensorVariable):
    """Multidimensional minibatch that is a pure TensorVariable.

    The output of a ``MinibatchOp`` over ``self.shared``: every evaluation of
    a compiled function that contains it yields the next batch.

    Parameters
    ----------
    data : array_like, Source, str or os.PathLike
        The data, any layout, or a source of rows outside memory (see
        ``source``).  Float data is cast to ``theano.config.floatX``
        unless ``dtype`` is given; integer (and bool, complex) data is kept.
        Without a cast the array is not copied: ``shared`` holds it.
    batch_size : int or list of (int | (int, int) | None | Ellipsis), default 128
        PyMC3's grammar: an int samples that many rows; a list gives one entry
        per leading axis: an int samples that many entries (seed
        ``random_seed``), ``(size, seed)`` samples with its own seed, None
        takes the axis whole, one Ellipsis stands for as many whole axes as
        needed.  Sampled axes combine as an outer product (``np.ix_``).
    dtype : str or dtype, optional
        Cast the data to this dtype.
    broadcastable : tuple of bool, optional
        Broadcastable pattern of the variable; default ``(False,) * ndim``.
        True is allowed only for an axis of length 1 in every batch.
    name : str, default "Minibatch"
    random_seed : int, default 42
        Seed of every sampled axis without a seed of its own.
    update_shared_f : callable, optional
        Returns a new array for ``update_shared()``.
    in_memory_size : int or list of (int | None | slice | Ellipsis), optional
        Keep only this part of the data (a C-contiguous copy); an int k means
        the first k entries of its axis.
    replace : bool, default True
        Sample with replacement (mbcore's extension; PyMC3 always does).
    epochs, epoch_end, shard
        As for ``mbcore.Minibatch`` (mbcore's extensions): every row once an
        epoch, and this worker's share of each global batch.  ``epoch_end``
        is "wrap" or "drop" ("short" would change the variable's shape).
        ``total_size`` stays the data's length.

    Attributes
    ----------
    shared : TensorSharedVariable or None
        The data batches are read from; None when they are read through a
        source (``source``).
    source : mbcore.Source or None
        The source batches are read from, held by the Op (a ``SourceOp``),
        when ``data`` is one: a ``.npy`` path, an h5py dataset, a
        ``mbcore.Source`` (``mbcore.as_source``); a memory-mapped array is
        read in place, as an array.  Each batch is gathered in Python.
    minibatch : TensorVariable
        The minibatch expression, ``self`` (in PyMC3 a view of it): replace it
        with ``shared`` in ``theano.clone`` to evaluate on the whole data.
    rng_state : TensorSharedVariable
        int64 scalar, the step of the next batch; its ``default_update`` is
        the Op's ``state + 1`` output.
    spec : mbcore.BatchSpec
        The spec batches are drawn by (grammar, seed, sampling mode).
    total_size : int or list
        What to pass as PyMC3's ``total_size`` for the current data.

    Raises
    ------
    TypeError, ValueError
        The core's errors for a bad ``data``, ``batch_size``, ``dtype``,
        ``random_seed`` or ``in_memory_size``; ValueError for a
        ``broadcastable`` that does not fit.

    Notes
    -----
    Evaluation ``t`` (counting from 0) yields
    ``mbcore.Minibatch(data, batch_size, random_seed=random_seed).draw(t)``
    (after the floatX cast): one kernel call, O(batch bytes), independent of
    the number of rows.  Variables made with the same seed and spec over
    arrays with the same number of rows (X and y) pick the same rows in every
    evaluation of a function that contains both; ``minibatches`` makes such a
    group with one Op and one state.

    Examples
    --------
    >>> import numpy as np, theano
    >>> from mbcore.adapters.theano import Minibatch
    >>> import mbcore
    >>> data = np.arange(20.0).reshape(10, 2)
    >>> x = Minibatch(data, batch_size=4, random_seed=1, dtype="float64")
    >>> f = theano.function([], x)
    >>> core = mbcore.Minibatch(data, batch_size=4, random_seed=1)
    >>> all((f() == core.draw(t)).all() for t in range(3))
    True
    """

    def __init__(self, data, batch_size=128, dtype=None, broadcastable=None,
                 name="Minibatch", random_seed=42, update_shared_f=None,
                 in_memory_size=None, replace=True, epochs=False, epoch_end="wrap",
                 shard=None):
        _make_group([self], [data], batch_size, dtype, [broadcastable], [name], ["data"],
                    random_seed, [update_shared_f], in_memory_size, replace, name,
                    epochs, epoch_end, shard)

    # -- data --------------------------------------------------------------
    def set_value(self, value):
        """Read batches from ``value`` from now on; the stream goes on.

        ``value`` must have this variable's ndim and a dtype that casts to its
        dtype under ``same_kind`` rules (it is cast, and cut to
        ``in_memory_size``, as the constructor does); sampled axes may change
        length.  ``x.shared.set_value(v)`` is the same without the cast and
        cut.  On any error the old data stays in place.  A variable over a
        source reads that source for its life: TypeError (build a new
        Minibatch over another source).
        """
        if self.shared is None:
            raise TypeError(f"set_value is not available for a Minibatch over a source "
                            f"({self.source!r}): the Op holds the source; build a new "
                            f"Minibatch over another one")
        arr = self.spec.prepare(value, self.dtype, "value", casting="same_kind",
                                ndim=self.ndim, in_memory_size=self.in_memory_size)
        self.shared.set_value(arr, borrow=True)

    def update_shared(self):
        """``set_value(update_shared_f())``."""
        if self.update_shared_f is None:
            raise ValueError("update_shared_f is None: pass update_shared_f=callable "
                             "to Minibatch to use update_shared()")
        self.set_value(self.update_shared_f())

    def _data_shape(self):
        if self.shared is None:
            return tuple(self.source.shape)
        return self.shared.get_value(borrow=True).shape

    @property
    def total_size(self):
        return self.spec.total_size(self._data_shape())

    # -- resumable state -----------------------------------------------------
    def _shapes(self):
        return [v._data_shape() for v in self._group]

    def state_dict(self):
        """The state of this variable's stream, in the core's format: that of
        ``mbcore.Minibatch.state_dict()`` for one array, of
        ``mbcore.minibatches(...).state_dict()`` for the arrays of one
        ``minibatches`` call (they share ``rng_state``).  It holds the step
        of ``rng_state``, the mode, the seed and the fingerprints of the spec
        and of the data's shapes, and loads into either."""
        return self.spec.state_dict(int(self.rng_state.get_value()), *self._shapes())

    def load_state_dict(self, state):
        """Set ``rng_state`` (for every variable of its group) to the state's
        step.  The state, from ``state_dict`` here or in the core, must be of
        the same spec, seed, mode and data shapes (any shard): else a
        ValueError, and nothing changes."""
        step = self.spec.check_graph_step(self.spec.check_state(state, *self._shapes()))
        self.rng_state.set_value(np.array(step, dtype=np.int64))

    # -- Variable protocol ---------------------------------------------------
    def clone(self):
        """Return a new Variable like self (a plain TensorVariable, no owner);
        tags and name are copied."""
        cp = tt.TensorVariable(self.type, None, None, self.name)
        cp.tag = copy(self.tag)
        return cp

    def __setstate__(self, state):
        self.__dict__.update(state)
        _LIVE.add(self)


def _make_group(variables, arrays, batch_size, dtype, broadcastables, names, whats,
                random_seed, update_shared_fs, in_memory_size, replace, state_name,
                epochs=False, epoch_end="wrap", shard=None):
    """Turn ``variables`` (fresh Minibatch instances) into the outputs of one
    MinibatchOp over ``arrays`` with one state."""
    for f in update_shared_fs:
        if f is not None and not callable(f):
            raise TypeError(f"update_shared_f must be callable, got {f!r}")
    spec = BatchSpec(batch_size, random_seed, replace, epochs, epoch_end, shard)
    prepared = [_prepare(spec, a, dtype, in_memory_size, what)
                for a, what in zip(arrays, whats)]
    if len(prepared) > 1:
        spec.check_aligned([a.shape for a in prepared], whats)
    patterns = [_patterns(spec, b, a.shape) for b, a in zip(broadcastables, prepared)]
    sources = [a if isinstance(a, Source) else None for a in prepared]
    if any(s is not None for s in sources):
        op = SourceOp(spec, sources, [out for out, _ in patterns])
    else:
        op = MinibatchOp(spec, broadcastable=[out for out, _ in patterns])
    state = theano.shared(np.array(0, dtype=np.int64), name=f"{state_name}.rng_state")
    shared = [None if src is not None else
              theano.shared(arr, name=f"{name}.shared", borrow=True, broadcastable=sb)
              for arr, src, name, (_, sb) in zip(prepared, sources, names, patterns)]
    model = op.make_node(state, *[sh for sh in shared if sh is not None])  # checks, types
    new_state = model.outputs[0].type()
    for var, ref, name in zip(variables, model.outputs[1:], names):
        tt.TensorVariable.__init__(var, ref.type, None, None, name)
    Apply(op, model.inputs, [new_state] + list(variables))
    state.default_update = new_state
    new_state.tag.test_value = np.array(1, dtype=np.int64)
    first = spec.draw(0, *prepared)
    for var, sh, src, batch, f in zip(variables, shared, sources, first, update_shared_fs):
        var.shared = sh
        var.source = src
        var.minibatch = var
        var.rng_state = state
        var.update_shared_f = f
        var.spec = spec
        var.batch_size = batch_size
        var.random_seed = random_seed
        var.in_memory_size = in_memory_size
        var.epochs = spec.epochs
        var.epoch_end = epoch_end
        var.shard = spec.shard
        var._group = tuple(variables)
        var.tag.test_value = batch
        _LIVE.add(var)
    return variables


def minibatches(*arrays, batch_size=128, dtype=None, broadcastable=None,
                name="Minibatch", random_seed=42, in_memory_size=None, replace=True,
                epochs=False, epoch_end="wrap", shard=None):
    """Aligned Minibatch variables of several arrays, drawn by one Op.

    Every array gets the same ``batch_size`` spec and seed, so row i of each
    batch comes from the same row of each array; the arrays must agree in
    length along sampled axes.  The variables share one state: every
    evaluation of a function containing any of them advances all of them.

    Parameters
    ----------
    *arrays : array_like
    batch_size, dtype, random_seed, in_memory_size, replace, epochs, epoch_end, shard
        As for ``Minibatch``, applied to every array.
    broadcastable : list of (tuple of bool or None), optional
        One pattern per array.
    name : str, default "Minibatch"
        Variable ``i`` is named ``f"{name}_{i}"``.

    Returns
    -------
    tuple of Minibatch

    Examples
    --------
    >>> import numpy as np, theano
    >>> from mbcore.adapters.theano import minibatches
    >>> X = np.arange(30.0).reshape(10, 3); y = np.arange(10.0)
    >>> xb, yb = minibatches(X, y, batch_size=4)
    >>> bx, by = theano.function([], [xb, yb])()
    >>> bool((bx[:, 0] == 3 * by).all())
    True
    """
    if not arrays:
        raise ValueError("minibatches needs at least one array, got none")
    if broadcastable is None:
        broadcastable = [None] * len(arrays)
    elif len(broadcastable) != len(arrays):
        raise ValueError(f"broadcastable must have one entry per array ({len(arrays)}), "
                         f"got {broadcastable!r}")
    variables = [Minibatch.__new__(Minibatch) for _ in arrays]
    names = [f"{name}_{i}" for i in range(len(arrays))]
    whats = [f"arrays[{i}]" for i in range(len(arrays))]
    return tuple(_make_group(variables, list(arrays), batch_size, dtype, list(broadcastable),
                             names, whats, random_seed, [None] * len(arrays), in_memory_size,
                             replace, name, epochs, epoch_end, shard))


def align_minibatches(batches=None):
    """Restart the streams of Minibatch variables, so that they select the
    same rows from now on (each next batch is batch 0 of its stream).

    Parameters
    ----------
    batches : iterable of Minibatch, optional
        Default: every live Minibatch variable.

    Raises
    ------
    TypeError
        For an item that is not a Minibatch.
    """
    if batches is None:
        batches = list(_LIVE)
    else:
        batches = list(batches)
        for b in batches:
            if not isinstance(b, Minibatch):
                raise TypeError(f"align_minibatches takes Minibatch variables, got "
                                f"{type(b).__name__} {b!r}")
    for state in {id(b.rng_state): b.rng_state for b in batches}.values():
        state.set_value(np.array(0, dtype=np.int64))
