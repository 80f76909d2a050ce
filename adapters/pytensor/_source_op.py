"""``SourceDraw``: the Op that draws aligned batches when some data are Sources.

A :class:`mbcore.Source` (a ``.npy`` file, a Zarr or HDF5 array, a Dask
array, a user's Source) cannot be a PyTensor graph input: its rows are not
in memory.  The Op holds the sources themselves, as ``__props__``, and takes
the other data (arrays, shared variables) and the step as inputs:

``(data_j for j not a source ..., step) -> (batch_0, ..., batch_{m-1}, step + 1)``

every batch from one ``mbcore.BatchSpec.draw`` over all the data, which
draws the indices for a stand-in of each source's shape and lets the source
gather the rows (the core's mechanism), so the batches are those of
``mbcore.minibatches`` over the same data.  The Op runs in Python on every
backend: on the C and Python linkers a thunk over ``BatchSpec.bind`` of the
data, on Numba its ``perform`` in object mode (``_numba.py``), on JAX its
``perform`` through ``jax.pure_callback`` (``_jax.py``).  The sources are not mutable state of the Op: a batch is a
pure function of the step, the spec and the data.

Pickling the Op pickles its sources: a memory-mapped file or ``.npy`` source
pickles as its path and reopens it, a Dask array as its graph, a Zarr array
as its store, an HDF5 dataset as its file's name and path (opened read-only
again); a source that cannot be pickled (an HDF5 file held in memory)
raises ``pickle.PicklingError`` naming it.
"""
import pickle

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from mbcore import BatchSpec, Source

from .._reuse import reusable
from ._op import batch_tensor
from ._step import next_step

__all__ = ["SourceDraw", "check_source_dtype"]


def check_source_dtype(source, what):
    """``source``'s dtype as a PyTensor dtype name; TypeError naming ``what``
    for a dtype a PyTensor tensor cannot hold (a non-native byte order, a
    string or structured dtype), with the cast that would make it one."""
    dt = np.dtype(source.dtype)
    ok = dt.isnative
    if ok:
        try:
            pt.TensorType(dt.name, shape=())
        except TypeError:
            ok = False
    if not ok:
        hint = (f"mbcore.as_source(value, dtype={dt.newbyteorder('=').name!r}) casts its "
                f"batches" if dt.kind in "biufc" else
                "mbcore.as_source(value, dtype=...) with a numeric dtype casts its batches")
        raise TypeError(f"{what} has dtype {dt.str!r}, which a PyTensor tensor cannot hold "
                        f"(source {source!r}): {hint}")
    return dt.name


class SourceDraw(Op):
    """``(inputs..., step) -> (batch_0, ..., batch_{m-1}, step + 1)`` with
    some data held as Sources.

    Parameters
    ----------
    spec : mbcore.BatchSpec
        The batch spec: grammar, seed, sampling mode.
    sources : tuple of (mbcore.Source | None)
        One entry per data position: the Source read there, or None where
        the data is the next graph input.

    Notes
    -----
    ``batch_j`` is ``spec.draw(step, data_0, ..., data_{m-1})[j]``; ``step``
    is an int64 scalar in ``[0, 2**63 - 1)``.  A batch of a source has the
    static shape ``spec.batch_shape(source.shape)`` and the source's dtype.
    The gradient with respect to the data inputs is not implemented (data
    are observed values); the step has none.
    """

    __props__ = ("spec", "sources")

    def __init__(self, spec, sources):
        if not isinstance(spec, BatchSpec):
            raise TypeError(f"spec must be a mbcore.BatchSpec, got {type(spec).__name__}")
        sources = tuple(sources)
        for k, s in enumerate(sources):
            if s is not None and not isinstance(s, Source):
                raise TypeError(f"sources[{k}] must be a mbcore.Source or None, got "
                                f"{type(s).__name__} {s!r}")
        if all(s is None for s in sources):
            raise ValueError("sources must hold at least one mbcore.Source, got none")
        self.spec = spec
        self.sources = sources
        self._dtypes = [None if s is None else check_source_dtype(s, f"sources[{k}]")
                        for k, s in enumerate(sources)]

    def data(self, inputs):
        """The data of every position: the held sources, and ``inputs`` (the
        values of the node's data inputs) in the other positions."""
        it = iter(inputs)
        return [next(it) if s is None else s for s in self.sources]

    def make_node(self, *inputs):
        *data, step = inputs
        want = sum(s is None for s in self.sources)
        if len(data) != want:
            raise TypeError(f"{self} takes {want} data input(s) and the step, got "
                            f"{len(inputs)} inputs")
        data = [pt.as_tensor_variable(d) for d in data]
        step = pt.as_tensor_variable(step)
        if step.type.ndim != 0 or step.type.dtype != "int64":
            raise TypeError(f"step must be an int64 scalar, got {step.type}")
        outs = [pt.tensor(dtype=self._dtypes[i], shape=self.spec.batch_shape(d.shape))
                if isinstance(d, Source) else batch_tensor(self.spec, i, d)
                for i, d in enumerate(self.data(data))]
        return Apply(self, [*data, step], [*outs, step.type()])

    def infer_shape(self, fgraph, node, shapes):
        it = iter(shapes[:-1])
        out = []
        for d in self.data(node.inputs[:-1]):
            if isinstance(d, Source):
                out.append(tuple(pt.constant(n, dtype="int64")
                                 for n in self.spec.batch_shape(d.shape)))
                continue
            shape = next(it)
            out.append(tuple(n if b is None else pt.constant(b, dtype="int64")
                             for n, b in zip(shape, self.spec.sizes(d.type.ndim))))
        return [*out, ()]

    def perform(self, node, inputs, output_storage):
        *values, step = inputs
        t = next_step(step)
        data = self.data(values)
        outs = [reusable(s[0], v.type.dtype, self.spec.batch_shape(d.shape))
                for s, v, d in zip(output_storage, node.outputs, data)]
        batches = self.spec.draw(t, *data, out=outs)
        for s, b in zip(output_storage, batches):
            s[0] = b
        output_storage[-1][0] = np.array(t + 1, dtype=np.int64)

    def make_thunk(self, node, storage_map, compute_map, no_recycling, impl=None):
        """A Python thunk on every linker, without a per-call ``perform``
        frame: it keeps ``spec.bind`` of the data (bound again when an input
        is another array) and the batch shapes, and draws into the arrays
        left in the output cells when they fit (PyTensor empties the cells
        of the arrays it must not reuse)."""
        ins = [storage_map[v] for v in node.inputs]
        outs = [storage_map[v] for v in node.outputs]
        done = [compute_map[v] for v in node.outputs] if compute_map is not None else []
        data_cells, step_cell = ins[:-1], ins[-1]
        batch_cells, next_cell = outs[:-1], outs[-1]
        dtypes = [np.dtype(v.type.dtype) for v in node.outputs[:-1]]
        bound = [None, None, None]      # the inputs' ids, the bound draw, the batch shapes
        spec = self.spec
        last = spec.LAST_GRAPH_STEP

        def thunk():
            t = int(step_cell[0])
            if not 0 <= t < last:
                next_step(t)      # raises
            values = [c[0] for c in data_cells]
            ids = tuple(map(id, values))
            if bound[1] is None or ids != bound[0]:
                data = self.data(values)
                # The bound draw keeps references to the data: an id seen
                # here is never another array's while it is bound.
                bound[1] = spec.bind(*data)
                bound[2] = [spec.batch_shape(d.shape) for d in data]
                bound[0] = ids
            out = [reusable(cell[0], dtype, shape)
                   for cell, shape, dtype in zip(batch_cells, bound[2], dtypes)]
            for cell, batch in zip(batch_cells, bound[1](t, out)):
                cell[0] = batch
            next_cell[0] = np.array(t + 1, dtype=np.int64)
            for d in done:
                d[0] = True

        thunk.inputs = ins
        thunk.outputs = outs
        thunk.lazy = False
        thunk.perform = self.perform
        return thunk

    def connection_pattern(self, node):
        m = len(node.outputs) - 1
        n = len(node.inputs) - 1
        return [[True] * m + [False] for _ in range(n)] + [[False] * m + [True]]

    def L_op(self, inputs, outputs, output_grads):
        *data, _ = inputs
        return [grad_not_implemented(self, i, d, "the gradient of a minibatch drawn through "
                                     "a Source with respect to other data")
                for i, d in enumerate(data)] + [DisconnectedType()()]

    def __reduce__(self):
        for k, s in enumerate(self.sources):
            if s is None:
                continue
            try:
                pickle.dumps(s, pickle.HIGHEST_PROTOCOL)
            except Exception as e:
                raise pickle.PicklingError(
                    f"SourceDraw cannot be pickled: sources[{k}] = {s!r} cannot be "
                    f"({type(e).__name__}: {e}); a memory-mapped file or .npy source pickles "
                    f"as its path, a Dask array as its graph") from e
        return type(self), (self.spec, self.sources)

    def __str__(self):
        return f"SourceDraw{{batch_size={self.spec.batch_size!r}}}"
