"""``MinibatchDraw``: the Op that draws aligned batches from a step.

``(data_0, ..., data_{m-1}, step) -> (batch_0, ..., batch_{m-1}, step + 1)``,
every batch from one ``mbcore.BatchSpec.draw``.  Three implementations:
``perform`` (PyTensor's reference), a Python thunk without a ``perform``
frame (``linker="py"``, or no C compiler), and C code (``_ccode.py``).
"""
import sys

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.c.op import COp
from pytensor.link.c.type import generic

from mbcore import BatchSpec

from .._reuse import reusable
from ._ccode import C_VERSION, c_code, struct_cleanup, struct_init, struct_support
from ._step import LAST_STEP, next_step

__all__ = ["MinibatchDraw", "MinibatchIndices"]


def batch_tensor(spec, i, d):
    """The output type of variable ``i``'s batches: ``d``'s dtype, its static
    shape with each sampled axis at its batch size."""
    if d.type.ndim < spec.min_ndim:
        raise ValueError(f"variable {i} must have at least ndim={spec.min_ndim} for "
                         f"batch_size={spec.batch_size!r}, got ndim={d.type.ndim}")
    shape = tuple(n if b is None else b for n, b in zip(d.type.shape, spec.sizes(d.type.ndim)))
    return pt.tensor(dtype=d.type.dtype, shape=shape)


class MinibatchDraw(COp):
    """``(data_0, ..., data_{m-1}, step) -> (batch_0, ..., batch_{m-1}, step + 1)``.

    ``batch_j`` is ``spec.draw(step, data_0, ..., data_{m-1})[j]``: one kernel
    call draws the indices once for all inputs (aligned along their sampled
    axes) and gathers them.  ``step`` is an int64 scalar in ``[0, 2**63 - 1)``.

    Parameters
    ----------
    spec : mbcore.BatchSpec
        The batch spec: grammar, seed, ``replace``.
    """

    __props__ = ("spec",)
    params_type = generic

    def __init__(self, spec):
        if not isinstance(spec, BatchSpec):
            raise TypeError(f"spec must be a mbcore.BatchSpec, got {type(spec).__name__}")
        self.spec = spec

    def make_node(self, *inputs):
        if len(inputs) < 2:
            raise TypeError(f"MinibatchDraw takes the data and the step, got {len(inputs)} inputs")
        *data, step = inputs
        data = [pt.as_tensor_variable(d) for d in data]
        step = pt.as_tensor_variable(step)
        if step.type.ndim != 0 or step.type.dtype != "int64":
            raise TypeError(f"step must be an int64 scalar, got {step.type}")
        outs = [batch_tensor(self.spec, i, d) for i, d in enumerate(data)]
        return Apply(self, [*data, step], [*outs, step.type()])

    def infer_shape(self, fgraph, node, shapes):
        *data_shapes, _ = shapes
        out = []
        for d, shape in zip(node.inputs[:-1], data_shapes):
            sizes = self.spec.sizes(d.type.ndim)
            out.append(tuple(n if b is None else pt.constant(b, dtype="int64")
                             for n, b in zip(shape, sizes)))
        return [*out, ()]

    def perform(self, node, inputs, output_storage):
        *data, step = inputs
        t = next_step(step)
        outs = [reusable(s[0], v.type.dtype, self.spec.batch_shape(d.shape))
                for s, v, d in zip(output_storage, node.outputs, data)]
        batches = self.spec.draw(t, *data, out=outs)
        for s, b in zip(output_storage, batches):
            s[0] = b
        output_storage[-1][0] = np.array(t + 1, dtype=np.int64)

    def get_params(self, node):
        return self.spec

    def make_thunk(self, node, storage_map, compute_map, no_recycling, impl=None):
        """The C thunk where a C compiler is configured, else the Python one."""
        if (impl is None and pytensor.config.cxx) or impl == "c":
            return super().make_thunk(node, storage_map, compute_map, no_recycling, impl="c")
        return self.make_py_thunk(node, storage_map, compute_map, no_recycling)

    def make_py_thunk(self, node, storage_map, compute_map, no_recycling, debug=False):
        """A thunk with no per-call ``perform`` frame.

        It draws into the batches of its previous call when no one else
        holds them: PyTensor frees intermediate results after their last use
        and clears function outputs it must not recycle, so the thunk keeps
        its own reference to each batch and reuses it only while that is
        the sole reference left (a batch the caller kept is never written).
        Reuse spares the allocation and the page faults of fresh memory.
        """
        ins = [storage_map[v] for v in node.inputs]
        outs = [storage_map[v] for v in node.outputs]
        done = [compute_map[v] for v in node.outputs] if compute_map is not None else []
        data_cells, step_cell = ins[:-1], ins[-1]
        batch_cells, next_cell = outs[:-1], outs[-1]
        m = len(batch_cells)
        kept = [None] * m          # the batches of the last call
        bound = [None, None]       # the data arrays' ids, and spec.bind of them
        spec = self.spec
        refcount = sys.getrefcount
        int64 = np.int64
        array = np.array

        def thunk():
            t = int(step_cell[0])
            if not 0 <= t < LAST_STEP:
                next_step(t)      # raises
            data = [c[0] for c in data_cells]
            ids = tuple(map(id, data))
            out = None
            if ids == bound[0]:
                out = []
                for k in range(m):
                    prev = kept[k]
                    # References: kept, prev, getrefcount's argument, and
                    # the storage cell when PyTensor left it there.
                    free = prev is not None and refcount(prev) == 3 + (batch_cells[k][0] is prev)
                    out.append(prev if free else None)
                    prev = None
            else:
                # The bound Samplers keep references to their arrays: while
                # bound, an id seen here is never another array's.
                # bind_one for one array skips the group draw (_ccode.py).
                bound[1] = spec.bind_one(data[0]) if m == 1 else spec.bind(*data)
                bound[0] = ids
            if m == 1:
                res = (bound[1](t, None if out is None else out[0]),)
            else:
                res = bound[1](t, out)
            for k in range(m):
                batch_cells[k][0] = kept[k] = res[k]
            next_cell[0] = array(t + 1, dtype=int64)
            for d in done:
                d[0] = True

        thunk.inputs = ins
        thunk.outputs = outs
        thunk.lazy = False
        thunk.perform = self.perform
        return thunk

    # -- C implementation (_ccode.py)
    def c_support_code_struct(self, node, name):
        return struct_support(name)

    def c_init_code_struct(self, node, name, sub):
        return struct_init(name)

    def c_cleanup_code_struct(self, node, name):
        return struct_cleanup(name)

    def c_code(self, node, name, inp, out, sub):
        return c_code(self.spec, node, name, inp, out, sub)

    def c_code_cache_version(self):
        return (1, C_VERSION)

    def connection_pattern(self, node):
        m = len(node.inputs) - 1
        return [[i == j for j in range(m)] + [False] for i in range(m)] + \
               [[False] * m + [True]]

    def L_op(self, inputs, outputs, output_grads):
        """With respect to data ``j``: its output gradient added back to the
        rows (entries) batch ``step`` was drawn from, repeats summed, as
        ``pm.Minibatch``'s advanced indexing gives.  Implemented when the
        sampled axes lead (an int ``batch_size``, or ``[b0, b1, ...]``
        followed by whole axes); otherwise refused at ``grad`` time."""
        *data, step = inputs
        grads = []
        for i, (d, g) in enumerate(zip(data, output_grads)):
            if isinstance(g.type, DisconnectedType):
                grads.append(d.zeros_like())
                continue
            sampled = self.spec.sampled_axes(d.type.ndim)
            if sampled != tuple(range(len(sampled))):
                grads.append(grad_not_implemented(
                    self, i, d, "the gradient of a minibatch with respect to its data when "
                    "a whole axis comes before a sampled one"))
                continue
            idx = MinibatchIndices(self.spec, d.type.ndim)(d.shape, step)
            idx = idx if isinstance(idx, (list, tuple)) else [idx]
            k = len(idx)
            index = tuple(v.reshape((-1,) + (1,) * (k - 1 - a)) if k > 1 else v
                          for a, v in enumerate(idx))
            grads.append(pt.inc_subtensor(d.zeros_like()[index], g))
        return grads + [DisconnectedType()()]

    def __str__(self):
        return f"MinibatchDraw{{batch_size={self.spec.batch_size!r}}}"


class MinibatchIndices(Op):
    """``(shape, step) -> (idx_0, ..., idx_{k-1})``: the int64 indices batch
    ``step`` of an array of this shape takes on each sampled axis, in axis
    order (``BatchSpec.indices``).  Used by the gradient of ``MinibatchDraw``."""

    __props__ = ("spec", "ndim")

    def __init__(self, spec, ndim):
        self.spec = spec
        self.ndim = int(ndim)

    def make_node(self, shape, step):
        shape = pt.as_tensor_variable(shape)
        step = pt.as_tensor_variable(step)
        k = len(self.spec.sampled_axes(self.ndim))
        sizes = [b for b in self.spec.sizes(self.ndim) if b is not None]
        return Apply(self, [shape, step],
                     [pt.tensor(dtype="int64", shape=(sizes[a],)) for a in range(k)])

    def perform(self, node, inputs, output_storage):
        shape, step = inputs
        idx = [v for v in self.spec.indices(next_step(step), tuple(int(n) for n in shape))
               if v is not None]
        for s, v in zip(output_storage, idx):
            s[0] = v

    def L_op(self, inputs, outputs, output_grads):
        return [DisconnectedType()(), DisconnectedType()()]

    def connection_pattern(self, node):
        return [[False] * len(node.outputs), [False] * len(node.outputs)]
