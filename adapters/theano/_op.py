"""``MinibatchOp``: the Theano Op that draws aligned batches from a step.

``(state, data_0, ..., data_{m-1}) -> (state + 1, batch_0, ..., batch_{m-1})``,
every batch from one ``mbcore.BatchSpec`` draw.  Three implementations:
``perform`` (Theano's reference, used by DebugMode to check the others), a
Python thunk without a ``perform`` frame (``linker="py"``, or no C compiler),
and C code (``minibatch_op.c``, Theano's default).
"""
import numpy as np

from mbcore import BatchSpec

from .._reuse import reusable
from .._theano_compat import import_theano

theano = import_theano()

import theano.tensor as tt  # noqa: E402
from theano.gradient import DisconnectedType, grad_undefined  # noqa: E402
from theano.graph.basic import Apply  # noqa: E402
from theano.graph.op import COp, Op  # noqa: E402
from theano.graph.type import generic  # noqa: E402
from theano.tensor.subtensor import advanced_inc_subtensor1  # noqa: E402

from . import _ccode  # noqa: E402

__all__ = ["MinibatchOp", "MinibatchIndices"]


class MinibatchOp(COp):
    """Draw aligned minibatches of one or more arrays from a step counter.

    ``MinibatchOp(spec)(state, data_0, ..., data_{m-1})`` returns
    ``[state + 1, batch_0, ..., batch_{m-1}]`` with
    ``(batch_0, ...) = spec.draw(state, data_0, ...)``.

    Parameters
    ----------
    spec : mbcore.BatchSpec
        The batch spec: grammar, seed, sampling mode.  ``epoch_end="short"``
        is refused (a short batch would change the variable's shape).
    broadcastable : tuple of tuples of bool, optional
        Broadcastable pattern of each batch.  By default sampled axes are not
        broadcastable and whole axes are as in the data.  A sampled axis may
        be broadcastable only when its batch has length 1.

    Notes
    -----
    ``state`` is an int64 scalar in ``[0, 2**63 - 1)``
    (``BatchSpec.check_graph_step``); the data inputs must agree in length
    along their sampled axes (``BatchSpec.check_aligned``).  O(batch bytes):
    one kernel call draws the indices once for all inputs and gathers them.
    The lengths are read at evaluation time, so after ``shared.set_value``
    with more or fewer rows the indices cover the new range.

    The C code and the Python thunk keep ``spec.bind`` of the arrays they
    last saw (``spec.bind_one`` for one input) and bind again when an input
    is another array or the same one with another shape or strides (the
    bound draw keeps references to its arrays, so an id cannot be reused
    meanwhile).  ``perform`` calls ``spec.draw``.

    The gradient with respect to ``data_j`` scatters (adds) the output
    gradient back to the entries the batch was drawn from; with respect to
    the state it is undefined.
    """

    __props__ = ("spec", "broadcastable")
    params_type = generic

    def __init__(self, spec, broadcastable=None):
        if not isinstance(spec, BatchSpec):
            raise TypeError(f"spec must be a mbcore.BatchSpec, got {type(spec).__name__} "
                            f"{spec!r}")
        if spec.epochs and spec.epoch_end == "short":
            raise ValueError("epoch_end='short' is not available for Theano variables (a short "
                             "batch would change the variable's shape): use 'wrap' or 'drop'")
        if broadcastable is not None:
            broadcastable = tuple(tuple(bool(b) for b in per) for per in broadcastable)
            for j, per in enumerate(broadcastable):
                for k, (b, size) in enumerate(zip(per, spec.sizes(len(per)))):
                    if b and size is not None and size != 1:
                        raise ValueError(
                            f"axis {k} of batch {j} is sampled with size {size}, so it "
                            f"cannot be broadcastable (broadcastable={per})")
        self.spec = spec
        self.broadcastable = broadcastable

    def __str__(self):
        spec = self.spec
        mode = "" if spec.replace or spec.epochs else ", replace=False"
        mode += f", epochs={spec.epoch_end}" if spec.epochs else ""
        shard = "" if spec.shard is None else f", shard={spec.shard[0]}/{spec.shard[1]}"
        return f"{type(self).__name__}{{batch_size={spec.batch_size!r}{mode}{shard}}}"

    # -- graph ---------------------------------------------------------------
    def make_node(self, state, *data):
        state = tt.as_tensor_variable(state)
        if not isinstance(state.type, tt.TensorType) or state.type.ndim != 0 \
                or state.type.dtype != "int64":
            raise TypeError(f"state must be an int64 scalar, got {state.type}")
        if not data:
            raise TypeError(f"{self} takes one or more data inputs, got none")
        if self.broadcastable is not None and len(data) != len(self.broadcastable):
            raise TypeError(f"{self} takes {len(self.broadcastable)} data input(s) (one per "
                            f"broadcastable pattern), got {len(data)}")
        data = [tt.as_tensor_variable(d) for d in data]
        outs = [state.type()]
        for j, d in enumerate(data):
            if not isinstance(d.type, tt.TensorType):
                raise TypeError(f"data input {j} must be a tensor, got {d.type}")
            if d.type.ndim < self.spec.min_ndim:
                raise TypeError(f"data input {j} must have at least ndim={self.spec.min_ndim} "
                                f"for batch_size={self.spec.batch_size!r}, got {d.type} "
                                f"(ndim={d.type.ndim})")
            sizes = self.spec.sizes(d.type.ndim)
            if self.broadcastable is None:
                bcast = tuple(False if s is not None else b
                              for s, b in zip(sizes, d.type.broadcastable))
            else:
                bcast = self.broadcastable[j]
                if len(bcast) != d.type.ndim:
                    raise TypeError(f"data input {j} must have ndim={len(bcast)} (its "
                                    f"broadcastable pattern {bcast}), got {d.type}")
                for k, (bk, sk) in enumerate(zip(bcast, sizes)):
                    if bk and sk is None and not d.type.broadcastable[k]:
                        raise TypeError(
                            f"axis {k} of batch {j} is taken whole from data of type "
                            f"{d.type}, which is not broadcastable on that axis")
            outs.append(tt.TensorType(d.type.dtype, bcast)())
        return Apply(self, [state] + data, outs)

    def infer_shape(self, fgraph, node, shapes):
        out = [()]
        for d, dshape in zip(node.inputs[1:], shapes[1:]):
            sizes = self.spec.sizes(d.type.ndim)
            out.append(tuple(dshape[k] if s is None else tt.constant(s, dtype="int64")
                             for k, s in enumerate(sizes)))
        return out

    def connection_pattern(self, node):
        m = len(node.inputs) - 1
        rows = [[True] * (m + 1)]
        for j in range(m):
            rows.append([i == j + 1 for i in range(m + 1)])
        return rows

    def L_op(self, inputs, outputs, output_grads):
        state, data = inputs[0], inputs[1:]
        grads = [grad_undefined(self, 0, state, "the state is the step counter of a "
                                "random stream")]
        for x, gz in zip(data, output_grads[1:]):
            if isinstance(gz.type, DisconnectedType):
                grads.append(DisconnectedType()())
                continue
            grads.append(_scatter_add(self.spec, state, x, gz))
        return grads

    # -- evaluation ----------------------------------------------------------
    def get_params(self, node):
        return self.spec

    def perform(self, node, inputs, outputs, params=None):
        step = self.spec.check_graph_step(inputs[0])
        data = inputs[1:]
        outs = [reusable(out[0], d.dtype, self.spec.batch_shape(d.shape))
                for out, d in zip(outputs[1:], data)]
        for out, batch in zip(outputs[1:], self.spec.draw(step, *data, out=outs)):
            out[0] = batch
        outputs[0][0] = np.array(step + 1, dtype=np.int64)

    def make_py_thunk(self, node, storage_map, compute_map, no_recycling, debug=False):
        """A thunk with no per-call ``perform`` frame over ``spec.bind`` of
        the data (see the class Notes); ``perform`` under ``debug``."""
        if debug:
            return super().make_py_thunk(node, storage_map, compute_map, no_recycling,
                                         debug=True)
        in_storage = [storage_map[v] for v in node.inputs]
        out_storage = [storage_map[v] for v in node.outputs]
        computed = [compute_map[v] for v in node.outputs]
        state_in, data_in = in_storage[0], in_storage[1:]
        state_out, batch_out = out_storage[0], out_storage[1:]
        spec = self.spec
        last = spec.LAST_GRAPH_STEP
        single = len(data_in) == 1
        # What the bound draw was made from: per input (array, shape,
        # strides); the batch shapes; the bound draw (bind_one for one input:
        # it skips the group draw).
        bound = [None, None, None]
        int64 = np.int64
        array = np.array

        def thunk():
            step = int(state_in[0])
            if not 0 <= step < last:
                spec.check_graph_step(step)    # raises
            data = [c[0] for c in data_in]
            if bound[0] is None or any(a is not b[0] or a.shape != b[1] or a.strides != b[2]
                                       for a, b in zip(data, bound[0])):
                bound[2] = spec.bind_one(data[0]) if single else spec.bind(*data)
                bound[1] = [spec.batch_shape(d.shape) for d in data]
                bound[0] = [(d, d.shape, d.strides) for d in data]
            if single:
                out = batch_out[0]
                out[0] = bound[2](step, reusable(out[0], data[0].dtype, bound[1][0]))
            else:
                outs = [reusable(out[0], d.dtype, shape)
                        for out, d, shape in zip(batch_out, data, bound[1])]
                for out, batch in zip(batch_out, bound[2](step, outs)):
                    out[0] = batch
            state_out[0] = array(step + 1, dtype=int64)
            for flag in computed:
                flag[0] = True

        thunk.inputs = in_storage
        thunk.outputs = out_storage
        thunk.perform = self.perform
        thunk.lazy = False
        return thunk

    # -- C implementation (_ccode.py, minibatch_op.c) ------------------------
    def c_headers(self, **kwargs):
        return ["<string.h>"]

    def c_support_code(self, **kwargs):
        return _ccode.C_SUPPORT

    def c_support_code_struct(self, node, name):
        return _ccode.struct_support(name, len(node.inputs) - 1)

    def c_init_code_struct(self, node, name, sub):
        return _ccode.struct_init(name, len(node.inputs) - 1)

    def c_cleanup_code_struct(self, node, name):
        return _ccode.struct_cleanup(name, len(node.inputs) - 1)

    def c_code(self, node, name, inputs, outputs, sub):
        return _ccode.c_code(name, inputs, outputs, sub)

    def c_code_cache_version(self):
        return _ccode.C_VERSION


class MinibatchIndices(Op):
    """The indices a ``MinibatchOp`` batch is drawn from.

    ``MinibatchIndices(spec)(state, data)`` returns one int64 vector per
    sampled axis of ``data``, in axis order: the indices of batch ``state``
    (``BatchSpec.indices``).  Only ``data.shape`` is read.  Used by the
    gradient of ``MinibatchOp``.
    """

    __props__ = ("spec",)

    def __init__(self, spec):
        if not isinstance(spec, BatchSpec):
            raise TypeError(f"spec must be a mbcore.BatchSpec, got {type(spec).__name__} "
                            f"{spec!r}")
        self.spec = spec

    def make_node(self, state, data):
        state = tt.as_tensor_variable(state)
        data = tt.as_tensor_variable(data)
        if state.type.ndim != 0 or state.type.dtype != "int64":
            raise TypeError(f"state must be an int64 scalar, got {state.type}")
        if data.type.ndim < self.spec.min_ndim:
            raise TypeError(f"data must have at least ndim={self.spec.min_ndim} for "
                            f"batch_size={self.spec.batch_size!r}, got {data.type}")
        outs = [tt.lvector() for _ in self.spec.sampled_axes(data.type.ndim)]
        return Apply(self, [state, data], outs)

    def perform(self, node, inputs, outputs):
        state, data = inputs
        idx = self.spec.indices(self.spec.check_graph_step(state), data.shape)
        for out, i in zip(outputs, [i for i in idx if i is not None]):
            out[0] = i

    def infer_shape(self, fgraph, node, shapes):
        sizes = self.spec.sizes(node.inputs[1].type.ndim)
        return [(tt.constant(s, dtype="int64"),) for s in sizes if s is not None]

    def connection_pattern(self, node):
        n = len(node.outputs)
        return [[True] * n, [False] * n]

    def grad(self, inputs, output_grads):
        return [grad_undefined(self, 0, inputs[0]), DisconnectedType()()]


def _scatter_add(spec, state, x, gz):
    """The gradient of a batch of ``x`` with respect to ``x``: ``gz`` added
    to the entries the batch was drawn from (repeats summed)."""
    idx = MinibatchIndices(spec)(state, x)
    if not isinstance(idx, (list, tuple)):
        idx = [idx]
    if x.dtype in tt.discrete_dtypes:
        gx = x.zeros_like(dtype=theano.config.floatX)
        gz = tt.cast(gz, gx.dtype)
    else:
        gx = x.zeros_like()
    sampled = spec.sampled_axes(x.type.ndim)
    if sampled == (0,):
        return advanced_inc_subtensor1(gx, gz, idx[0])
    # Outer-product index over axes 0..last sampled (trailing whole axes are
    # implicit full slices), as np.ix_ builds it; repeats accumulate.
    last = sampled[-1]
    it = iter(idx)
    index = []
    for k in range(last + 1):
        ik = next(it) if k in sampled else tt.arange(x.shape[k])
        pattern = ["x"] * (last + 1)
        pattern[k] = 0
        index.append(ik.dimshuffle(pattern))
    return tt.inc_subtensor(gx[tuple(index)], gz)
