"""mbcore's minibatches in PyMC 5 / PyTensor graphs: a drop-in ``pm.Minibatch``.

>>> import numpy as np, pytensor
>>> from mbcore.adapters.pytensor import Minibatch
>>> X = np.arange(20.0).reshape(10, 2); y = np.arange(10.0)
>>> xb, yb = Minibatch(X, y, batch_size=4, random_seed=1)
>>> f = pytensor.function([], [xb, yb])
>>> a, b = f()
>>> bool((a[:, 0] == 2 * b).all())             # one draw picks the rows of both
True
>>> bool((f()[1] != b).any())                  # every call advances the stream
True

Design
------
``Minibatch(X, y, ...)`` builds one node of :class:`MinibatchDraw`,
``(X, y, step) -> (X_batch, y_batch, step + 1)``, where ``step`` is a shared
int64 scalar whose ``default_update`` is the node's last output.  The step is
the whole stream state (batch ``t`` is a pure function of seed, spec, data
shapes and ``t``: :class:`mbcore.BatchSpec`), so:

- every compiled function that uses the batches advances the stream by one
  per call: ``pytensor.function`` collects ``default_update`` of the shared
  variables in its graph, and ``pm.fit`` and ``pymc.compile`` go through it;
- two ``Minibatch`` calls own two step variables: no rewrite can merge their
  nodes or fold one into a constant;
- batch ``t`` equals ``mbcore.minibatches(X, y, ...).draw(t)`` on every
  backend, and ``step.set_value(t)`` moves the stream to batch ``t``;
- the sampling modes (``epochs``, ``epoch_end``, ``shard``) need no other
  state: an epoch's permutation and a shard's slice of the global batch are
  functions of the step too, so :func:`state_dict` and
  :func:`load_state_dict` read and set the step, in the core's state format.

The node is wrapped in PyMC's ``MinibatchOp`` (an inlined ``OpFromGraph``,
inputs ``(X, y, step)`` and outputs ``(X_batch, y_batch, step + 1)`` in the
order PyMC's own Minibatch uses), so PyMC finds it where it looks for
minibatches: the ``total_size`` warning, ``is_valid_observed``,
``extract_obs_data`` and ``remove_minibatched_nodes`` before posterior
predictive sampling.  Compilation inlines the wrapper away.

Backends: the C linker (PyTensor's default) runs the node's C code
(``_ccode.py``), which calls ``BatchSpec.bind`` of the data (``bind_one``
of one array), a C-level callable, with the output buffers PyTensor hands
back for reuse; the Python linker a thunk over the same callable; the Numba linker nopython code that
calls the kernel's ``draw_gather`` on the bound plans (``_numba.py``), with
a ``numba.objmode`` call of the draw where that does not apply; the JAX linker (when JAX is installed)
``jax.pure_callback`` into it.  Data given as a ``mbcore.Source`` (a
``.npy`` path, a Zarr, HDF5 or Dask array) are held by a ``SourceDraw``
node instead, which gathers in Python (``_source_op.py``).  See
docs/pytensor.md.
"""
import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.basic import Constant, Variable
from pytensor.graph.traversal import ancestors
from pytensor.tensor.random.op import RNGConsumerOp

from mbcore import BatchSpec, Source, as_source

from . import _jax, _numba  # noqa: F401 (register the Numba and JAX implementations)
from ._op import MinibatchDraw
from ._source_op import SourceDraw, check_source_dtype
from ._step import LAST_STEP

try:     # PyMC looks for its own MinibatchOp; without PyMC, the same wrapper
    from pymc.data import MinibatchOp
except ImportError:       # pragma: no cover - PyMC is installed with the extra
    from pytensor.compile.builders import OpFromGraph

    class MinibatchOp(OpFromGraph):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs, inline=True)

        def __str__(self):
            return "Minibatch"

__all__ = ["Minibatch", "MinibatchOp", "MinibatchDraw", "SourceDraw", "minibatch_step",
           "total_size",
           "epoch", "state_dict", "load_state_dict"]


def _is_random(var):
    return any(v.owner is not None and isinstance(v.owner.op, RNGConsumerOp)
               for v in ancestors([var]))


def _static_value(var):
    if isinstance(var, Constant):
        return var.data
    if isinstance(var, SharedVariable):
        return var.get_value(borrow=True)
    return None


def Minibatch(variable, *variables, batch_size=128, random_seed=42, replace=True,
              epochs=False, epoch_end="wrap", shard=None):
    """Aligned random minibatches of one or more variables, one draw for all.

    A drop-in for ``pymc.Minibatch``: the same call, the same return (one
    variable, or a list for several), recognised by PyMC (``total_size``,
    ``pm.Data``, ``pm.set_data``, posterior predictive sampling); in addition
    mbcore's grammar and sampling modes, a seed, and a stream that every
    compiled function advances, plain ``pytensor.function`` included.

    Parameters
    ----------
    variable, *variables : array_like or TensorVariable
        Data: NumPy arrays, ``pm.Data`` / shared variables, constants, or
        graphs of them without random variables.  They must agree in length
        along the sampled axes.
    batch_size : int or list, default 128
        The grammar of :class:`mbcore.Minibatch`: an int samples axis 0; a
        list gives one entry per leading axis (an int, ``(size, seed)``, None
        for a whole axis, one Ellipsis for as many whole axes as needed).
    random_seed : int or numpy.random.SeedSequence, default 42
        Seed of every sampled axis without a seed of its own.
    replace : bool, default True
        Sample with replacement (as ``pm.Minibatch`` does); False draws no
        index twice within a batch.  Not used with ``epochs=True``.
    epochs : bool, default False
        Draw in epochs, as :class:`mbcore.Minibatch` does: every entry of a
        sampled axis exactly once an epoch, each epoch a keyed permutation.
        :func:`epoch` tells the epoch of the next batch.
    epoch_end : {"wrap", "drop"}, default "wrap"
        With ``epochs=True``: "wrap" runs the batch at an epoch's end on
        into the next epoch, "drop" skips the last ``n % batch_size`` entries
        of each epoch.  "short" is refused: a short batch would change the
        shape of a graph variable.
    shard : (int, int), optional
        ``(rank, world)``: this worker's share of each global batch, the
        positions ``[rank * b / world, (rank + 1) * b / world)`` of the first
        sampled axis (batch size b, which world must divide).  The batches
        have ``b / world`` rows; ``total_size`` stays the data's length, so
        each worker's log-likelihood is scaled to the whole data set.

    Returns
    -------
    TensorVariable or list of TensorVariable
        The batches, named ``minibatch.0``, ``minibatch.1``, ...  The step
        variable of the stream is :func:`minibatch_step` of any of them.

    Examples
    --------
    >>> import numpy as np, pymc as pm
    >>> from mbcore.adapters.pytensor import Minibatch
    >>> X = np.random.default_rng(0).normal(size=(1000, 2)); y = X @ [1.0, -2.0]
    >>> xb, yb = Minibatch(X, y, batch_size=64)
    >>> with pm.Model():
    ...     w = pm.Normal("w", 0, 10, shape=2)
    ...     obs = pm.Normal("obs", xb @ w, 1.0, observed=yb, total_size=len(y))
    """
    spec = BatchSpec(batch_size, random_seed, replace, epochs, epoch_end, shard)
    if spec.epochs and spec.epoch_end == "short":
        raise ValueError("epoch_end='short' is not available for PyTensor variables (a short "
                         "batch would change the variable's shape): use 'wrap' or 'drop'")
    given = (variable, *variables)
    held = [_held_source(spec, v, f"variable {i}") for i, v in enumerate(given)]
    if any(h is not None for h in held):
        return _source_minibatch(spec, given, held, bool(variables))
    tensors = [pt.as_tensor_variable(v) for v in given]
    names = []
    for i, v in enumerate(tensors):
        names.append(v.name or f"variable {i}")
        if _is_random(v):
            raise ValueError(f"{i}: {v} is not valid for Minibatch, only non-random variables "
                             "are allowed")
        if v.type.ndim < spec.min_ndim:
            raise ValueError(f"{names[i]} must have at least ndim={spec.min_ndim} for "
                             f"batch_size={batch_size!r}, got ndim={v.type.ndim}")
    values = [_static_value(v) for v in tensors]
    for name, value in zip(names, values):
        if value is not None:
            spec.prepare(value, what=name)
    shapes = [tuple(np.shape(val)) if val is not None else v.type.shape
              for v, val in zip(tensors, values)]
    known = [(n, s) for n, s in zip(names, shapes)
             if all(s[a] is not None for a in spec.sampled_axes(len(s)))]
    if len(known) > 1:
        spec.check_aligned([s for _, s in known], [n for n, _ in known])
    step = pytensor.shared(np.int64(0), name="minibatch_step")
    inner_in = [v.type() for v in tensors] + [step.type()]
    inner_out = MinibatchDraw(spec)(*inner_in)
    *batches, next_step = MinibatchOp(inner_in, inner_out)(*tensors, step)
    step.default_update = next_step
    for i, b in enumerate(batches):
        b.name = f"minibatch.{i}"
    return batches if variables else batches[0]


def _held_source(spec, value, what):
    """The Source a Minibatch holds for ``value`` (checked by ``spec``), or
    None for a graph variable or an array (a memory-mapped one included:
    the kernel reads it in place)."""
    if isinstance(value, (Variable, np.ndarray)):
        return None
    source = as_source(value, what=what)
    if source is None:
        return None
    check_source_dtype(source, what)
    return spec.prepare(source, what=what)


def _source_minibatch(spec, given, held, several):
    """The batches of ``given`` when some are Sources: one ``SourceDraw``
    node that holds the sources, with the other data and the step as
    inputs.  It is not wrapped in PyMC's ``MinibatchOp``, which maps each
    batch to its whole data as a graph input: a source has none."""
    names = [f"variable {i}" for i in range(len(given))]
    tensors = []
    for i, (v, h) in enumerate(zip(given, held)):
        if h is not None:
            continue
        t = pt.as_tensor_variable(v)
        names[i] = t.name or names[i]
        if _is_random(t):
            raise ValueError(f"{i}: {t} is not valid for Minibatch, only non-random variables "
                             "are allowed")
        value = _static_value(t)
        if value is not None:
            spec.prepare(value, what=names[i])
        tensors.append(t)
    shapes = [h.shape if h is not None else None for h in held]
    it = iter(tensors)
    for i, h in enumerate(held):
        if h is None:
            t = next(it)
            value = _static_value(t)
            shapes[i] = tuple(np.shape(value)) if value is not None else t.type.shape
    known = [(n, s) for n, s in zip(names, shapes)
             if all(s[a] is not None for a in spec.sampled_axes(len(s)))]
    if len(known) > 1:
        spec.check_aligned([s for _, s in known], [n for n, _ in known])
    step = pytensor.shared(np.int64(0), name="minibatch_step")
    *batches, next_step = SourceDraw(spec, held)(*tensors, step)
    step.default_update = next_step
    for i, b in enumerate(batches):
        b.name = f"minibatch.{i}"
    return batches if several else batches[0]


def minibatch_step(batch):
    """The shared int64 step variable of the stream ``batch`` comes from.

    ``minibatch_step(xb).set_value(t)`` makes the next batch batch ``t``;
    ``get_value()`` is the number of batches drawn since step 0.
    """
    return _stream(batch)[2]


def _inner_draw(op):
    nodes = op.fgraph.apply_nodes
    return next((n.op for n in nodes if isinstance(n.op, MinibatchDraw)), None)


def _stream(batch):
    """(node, spec, step variable, data) of the stream ``batch`` comes from:
    the data are the node's data inputs, and the Sources a ``SourceDraw``
    holds in their positions.  ValueError for another variable."""
    node = getattr(batch, "owner", None)
    if node is not None and isinstance(node.op, SourceDraw):
        return node, node.op.spec, node.inputs[-1], node.op.data(node.inputs[:-1])
    draw = _inner_draw(node.op) if node is not None and isinstance(node.op, MinibatchOp) else None
    if not isinstance(draw, MinibatchDraw):
        raise ValueError(f"{batch} is not a batch of mbcore.adapters.pytensor.Minibatch")
    return node, draw.spec, node.inputs[-1], node.inputs[:-1]


def _shape_of(data):
    if isinstance(data, Source):
        return tuple(data.shape)
    value = _static_value(data)
    return tuple(np.shape(value)) if value is not None else tuple(
        int(n) for n in data.shape.eval())


def total_size(batch):
    """What to pass as ``total_size`` for an observed ``batch``: PyMC's
    convention for this spec (an int for an int ``batch_size``, else a list),
    computed from the current data (a Source's shape).  With a ``shard`` it
    is still the whole data's length: each worker's log-likelihood estimates
    the whole data's."""
    node, spec, _, data = _stream(batch)
    return spec.total_size(_shape_of(data[node.outputs.index(batch)]))


def _stream_shapes(batch):
    """The node, spec, step variable and the shapes of all data of the
    stream ``batch`` comes from."""
    node, spec, step, data = _stream(batch)
    return node, spec, step, [_shape_of(d) for d in data]


def epoch(batch):
    """With ``epochs=True``, the epoch of the next batch of the stream
    ``batch`` comes from (as ``mbcore.Minibatch.epoch``: an int, or a tuple
    with one per sampled axis when several are sampled); None without
    epochs.  Read from the step variable and the current data."""
    _, spec, step, shapes = _stream_shapes(batch)
    return spec.epoch(int(step.get_value()), shapes[0])


def state_dict(batch):
    """The state of the stream ``batch`` comes from, in the format of
    ``mbcore.Minibatch.state_dict()`` (one variable) or of
    ``mbcore.minibatches(...).state_dict()`` (several): the step of its step
    variable, the mode, the seed and the fingerprints of the spec and the
    data's shapes.  A state moves freely between the core and the adapter."""
    _, spec, step, shapes = _stream_shapes(batch)
    return spec.state_dict(int(step.get_value()), *shapes)


def load_state_dict(batch, state):
    """Set the step variable of the stream ``batch`` comes from to the
    state's step.  The state (from :func:`state_dict` or the core's
    ``state_dict()``) must be of the same spec, seed, mode and data shapes,
    any shard: else a ValueError, and nothing changes."""
    _, spec, step, shapes = _stream_shapes(batch)
    t = spec.check_state(state, *shapes)
    if t >= LAST_STEP:
        raise ValueError(f"state's step {t} is past the last step an int64 step variable "
                         f"can draw ({LAST_STEP - 1})")
    step.set_value(np.int64(t))
