"""``SourceOp``: the Theano Op that draws aligned batches when some data are
Sources.

A :class:`mbcore.Source` (a ``.npy`` file, an HDF5 or Zarr array, a Dask
array, a user's Source) cannot be a Theano shared variable: its rows are not
in memory.  The Op holds the sources themselves, as ``__props__``, and takes
the state and the other data (shared arrays) as inputs:

``(state, data_j for j not a source ...) -> (state + 1, batch_0, ..., batch_{m-1})``

every batch from one ``mbcore.BatchSpec.draw`` over all the data, which
draws the indices for a stand-in of each source's shape and lets the source
gather the rows, so the batches are those of ``mbcore.minibatches`` over
the same data.  The Op runs in Python (a thunk over ``BatchSpec.bind`` of
the data; ``perform`` under DebugMode); it holds no mutable state (a batch is a pure function of the state, the spec and the data).

Pickling the Op pickles its sources: a memory-mapped file or ``.npy`` source
pickles as its path and reopens it, an HDF5 dataset as its file's name and
path (opened read-only again); a source that cannot be pickled (an HDF5 file
held in memory) raises ``pickle.PicklingError`` naming it.
"""
import pickle

import numpy as np

from mbcore import BatchSpec, Source

from .._reuse import reusable
from .._theano_compat import import_theano

theano = import_theano()

import theano.tensor as tt  # noqa: E402
from theano.gradient import grad_not_implemented, grad_undefined  # noqa: E402
from theano.graph.basic import Apply  # noqa: E402
from theano.graph.op import Op  # noqa: E402

__all__ = ["SourceOp", "check_source_dtype"]


def check_source_dtype(source, what):
    """``source``'s dtype as a Theano dtype name; TypeError naming ``what``
    for a dtype a Theano tensor cannot hold (a non-native byte order, a
    string or structured dtype), with the cast that would make it one."""
    dt = np.dtype(source.dtype)
    ok = dt.isnative
    if ok:
        try:
            tt.TensorType(dt.name, ())
        except TypeError:
            ok = False
    if not ok:
        hint = (f"dtype={dt.newbyteorder('=').name!r} casts its batches" if dt.kind in "biufc"
                else "a numeric dtype= casts its batches")
        raise TypeError(f"{what} has dtype {dt.str!r}, which a Theano tensor cannot hold "
                        f"(source {source!r}): {hint}")
    return dt.name


class SourceOp(Op):
    """``(state, inputs...) -> (state + 1, batch_0, ..., batch_{m-1})`` with
    some data held as Sources.

    Parameters
    ----------
    spec : mbcore.BatchSpec
        The batch spec: grammar, seed, sampling mode (``epoch_end="short"``
        is refused: a short batch would change the variable's shape).
    sources : tuple of (mbcore.Source | None)
        One entry per data position: the Source read there, or None where
        the data is the next graph input.
    broadcastable : tuple of tuples of bool
        The broadcastable pattern of each batch.

    Notes
    -----
    ``state`` is an int64 scalar in ``[0, 2**63 - 1)``.  The gradient with
    respect to the data inputs is not implemented (data are observed
    values); with respect to the state it is undefined.
    """

    __props__ = ("spec", "sources", "broadcastable")

    def __init__(self, spec, sources, broadcastable):
        if not isinstance(spec, BatchSpec):
            raise TypeError(f"spec must be a mbcore.BatchSpec, got {type(spec).__name__} "
                            f"{spec!r}")
        if spec.epochs and spec.epoch_end == "short":
            raise ValueError("epoch_end='short' is not available for Theano variables (a short "
                             "batch would change the variable's shape): use 'wrap' or 'drop'")
        sources = tuple(sources)
        for k, s in enumerate(sources):
            if s is not None and not isinstance(s, Source):
                raise TypeError(f"sources[{k}] must be a mbcore.Source or None, got "
                                f"{type(s).__name__} {s!r}")
        self.spec = spec
        self.sources = sources
        self.broadcastable = tuple(tuple(bool(b) for b in per) for per in broadcastable)
        self._dtypes = [None if s is None else check_source_dtype(s, f"sources[{k}]")
                        for k, s in enumerate(sources)]

    def data(self, inputs):
        """The data of every position: the held sources, and ``inputs`` in
        the other positions."""
        it = iter(inputs)
        return [next(it) if s is None else s for s in self.sources]

    def make_node(self, state, *data):
        state = tt.as_tensor_variable(state)
        if state.type.ndim != 0 or state.type.dtype != "int64":
            raise TypeError(f"state must be an int64 scalar, got {state.type}")
        want = sum(s is None for s in self.sources)
        if len(data) != want:
            raise TypeError(f"{self} takes the state and {want} data input(s), got "
                            f"{len(data)} data inputs")
        data = [tt.as_tensor_variable(d) for d in data]
        outs = [state.type()]
        for j, d in enumerate(self.data(data)):
            dtype = self._dtypes[j] if isinstance(d, Source) else d.type.dtype
            outs.append(tt.TensorType(dtype, self.broadcastable[j])())
        return Apply(self, [state] + data, outs)

    def infer_shape(self, fgraph, node, shapes):
        it = iter(shapes[1:])
        out = [()]
        for d in self.data(node.inputs[1:]):
            if isinstance(d, Source):
                out.append(tuple(tt.constant(n, dtype="int64")
                                 for n in self.spec.batch_shape(d.shape)))
                continue
            shape = next(it)
            out.append(tuple(shape[k] if s is None else tt.constant(s, dtype="int64")
                             for k, s in enumerate(self.spec.sizes(d.type.ndim))))
        return out

    def perform(self, node, inputs, outputs):
        step = self.spec.check_graph_step(inputs[0])
        data = self.data(inputs[1:])
        outs = [reusable(out[0], var.type.dtype, self.spec.batch_shape(d.shape))
                for out, var, d in zip(outputs[1:], node.outputs[1:], data)]
        for out, batch in zip(outputs[1:], self.spec.draw(step, *data, out=outs)):
            out[0] = batch
        outputs[0][0] = np.array(step + 1, dtype=np.int64)

    def make_py_thunk(self, node, storage_map, compute_map, no_recycling, debug=False):
        """A thunk without a per-call ``perform`` frame (``perform`` under
        ``debug``): it keeps ``spec.bind`` of the data (bound again when an
        input is another array or the same one with another shape or
        strides) and the batch shapes, and draws into the arrays left in the
        output cells when they fit (Theano empties the cells of the arrays
        it must not reuse)."""
        if debug:
            return super().make_py_thunk(node, storage_map, compute_map, no_recycling,
                                         debug=True)
        in_storage = [storage_map[v] for v in node.inputs]
        out_storage = [storage_map[v] for v in node.outputs]
        computed = [compute_map[v] for v in node.outputs]
        state_in, data_in = in_storage[0], in_storage[1:]
        state_out, batch_out = out_storage[0], out_storage[1:]
        dtypes = [np.dtype(v.type.dtype) for v in node.outputs[1:]]
        spec = self.spec
        last = spec.LAST_GRAPH_STEP
        bound = [None, None, None]      # (array, shape, strides) per input, draw, shapes

        def thunk():
            step = int(state_in[0])
            if not 0 <= step < last:
                spec.check_graph_step(step)    # raises
            values = [c[0] for c in data_in]
            if bound[1] is None or any(a is not b[0] or a.shape != b[1] or a.strides != b[2]
                                       for a, b in zip(values, bound[0])):
                data = self.data(values)
                bound[1] = spec.bind(*data)
                bound[2] = [spec.batch_shape(d.shape) for d in data]
                bound[0] = [(a, a.shape, a.strides) for a in values]
            out = [reusable(cell[0], dtype, shape)
                   for cell, shape, dtype in zip(batch_out, bound[2], dtypes)]
            for cell, batch in zip(batch_out, bound[1](step, out)):
                cell[0] = batch
            state_out[0] = np.array(step + 1, dtype=np.int64)
            for flag in computed:
                flag[0] = True

        thunk.inputs = in_storage
        thunk.outputs = out_storage
        thunk.perform = self.perform
        thunk.lazy = False
        return thunk

    def connection_pattern(self, node):
        m = len(node.outputs)
        return [[True] * m] + [[False] + [True] * (m - 1) for _ in node.inputs[1:]]

    def grad(self, inputs, output_grads):
        return [grad_undefined(self, 0, inputs[0], "the state is the step counter of a "
                               "random stream")] + [
            grad_not_implemented(self, i + 1, d, "the gradient of a minibatch drawn through "
                                 "a Source with respect to other data")
            for i, d in enumerate(inputs[1:])]

    def __reduce__(self):
        for k, s in enumerate(self.sources):
            if s is None:
                continue
            try:
                pickle.dumps(s, pickle.HIGHEST_PROTOCOL)
            except Exception as e:
                raise pickle.PicklingError(
                    f"SourceOp cannot be pickled: sources[{k}] = {s!r} cannot be "
                    f"({type(e).__name__}: {e}); a memory-mapped file or .npy source pickles "
                    f"as its path") from e
        return type(self), (self.spec, self.sources, self.broadcastable)

    def __str__(self):
        return f"SourceOp{{batch_size={self.spec.batch_size!r}}}"
