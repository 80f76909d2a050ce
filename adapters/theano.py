"""A drop-in ``Minibatch`` for PyMC3 3 / Theano models, drawn by mbcore's kernels.

    import pymc3 as pm
    from mbcore.adapters.theano import Minibatch

theano-pymc 1.1.2 cannot be imported on NumPy >= 1.23 unless its
``blas__ldflags`` setting has a value, and its compiled scan does not build on
Python 3.11; before theano is first imported, whoever imports it, mbcore
points the setting at the OpenBLAS in SciPy's wheel (unless you set it
yourself) and has Scan use Theano's Python implementation where the compiled
one cannot be built (see ``mbcore.adapters._theano_compat``).

What is here
------------
``Minibatch``      a TensorVariable that is the output of a ``MinibatchOp``,
                   with PyMC3's ``Minibatch`` API (``shared``, ``minibatch``,
                   ``set_value``, ``update_shared``, ``clone``, test value).
``minibatches``    aligned Minibatch variables of several arrays, one Op.
``generator``      a variable that pulls the next item of a Python generator
                   on every evaluation (PyMC3's ``pm.generator``).
``align_minibatches``  restart the streams of Minibatch variables together.
``MinibatchOp``    the Op: ``(state, data_0, ...) -> (state + 1, batch_0, ...)``.

How the stream works
--------------------
The Op holds no state.  Its inputs are an int64 scalar *state* (the step
counter of mbcore's counter-based streams) and the data; its outputs are
``state + 1`` and the batches.  The state is a shared variable whose
``default_update`` is the Op's first output, the way theano's random streams
carry their generator, so every call of a compiled function that contains the
variable draws the next batch, ``theano.function(..., no_default_updates=True)``
draws the same batch every call, and Theano's rewrites (merging equal nodes,
folding constants) cannot freeze a stream or merge two: a node's batch is a
pure function of its inputs.

Batch ``t`` is exactly ``mbcore.Minibatch(data, batch_size,
random_seed=seed).draw(t)``: the same spec parsing (``mbcore._spec``) and the
same kernel (``Sampler.draw``).
"""
import itertools
import weakref
from copy import copy

import numpy as np

from ._theano_compat import import_theano

theano = import_theano()

import theano.tensor as tt  # noqa: E402
from theano.gradient import DisconnectedType, grad_undefined  # noqa: E402
from theano.graph.basic import Apply  # noqa: E402
from theano.graph.op import COp, Op  # noqa: E402
from theano.graph.type import generic  # noqa: E402
from theano.tensor.subtensor import advanced_inc_subtensor1  # noqa: E402

from .._kernels._gather import Sampler, draw_group  # noqa: E402
from .._minibatch import (EPOCH_ENDS, Minibatches, _build, _check_shard,  # noqa: E402
                          _epoch_mode)
from .._generator import GeneratorAdapter  # noqa: E402
from .._state import check_state, make_state  # noqa: E402
from .._spec import (check_data, parse_batch_size, parse_in_memory_size, seed_key,  # noqa: E402
                     total_size_of)

__all__ = ["Minibatch", "minibatches", "generator", "align_minibatches", "MinibatchOp",
           "MinibatchIndices", "GeneratorOp", "GeneratorExhausted"]


# ---------------------------------------------------------------- the Op

def _step_of(state):
    """The step an int64 state value stands for (a Python int >= 0)."""
    step = int(state)
    if step < 0:
        raise ValueError(f"the minibatch state must be >= 0, got {step}")
    if step == _LAST_STATE:
        raise OverflowError(_LAST_STATE_MSG)
    return step


# The state after a batch is step + 1, an int64: the last step it can draw.
_LAST_STATE = 2 ** 63 - 1
_LAST_STATE_MSG = ("the minibatch state is 2**63 - 1, its largest value: no batch can be "
                   "drawn from it (set rng_state to an earlier step)")


class MinibatchOp(COp):
    """Draw aligned minibatches of one or more arrays from a step counter.

    ``MinibatchOp(sizes, keys, replace)(state, data_0, ..., data_{m-1})``
    returns ``[state + 1, batch_0, ..., batch_{m-1}]``.

    Parameters
    ----------
    sizes : tuple of tuples
        For each data input, one entry per axis: the batch size of a sampled
        axis, None for an axis taken whole (``AxisPlan.size``).
    keys : tuple of tuples
        For each data input, one entry per axis: the 128-bit Philox key
        ``(k0, k1)`` of a sampled axis (``mbcore._spec.seed_key``), None for a
        whole axis.
    replace : bool
        Sample with replacement.
    broadcastable : tuple of tuples, optional
        Broadcastable pattern of each batch.  By default sampled axes are not
        broadcastable and whole axes are as in the data.  A sampled axis may be
        broadcastable only when its size is 1.

    Notes
    -----
    ``batch_j = Sampler(data_j, sizes[j], keys[j], replace).draw(state)``,
    O(batch bytes).  The data inputs must agree in length along every axis
    that is sampled in more than one of them, so that equal keys pick the
    same rows.  All batches come from one kernel call (``draw_group``), which
    draws the indices once when the inputs' sampled axes share streams (as
    ``minibatches`` builds them).  The number of rows is read
    at evaluation time, so after ``shared.set_value`` with more or fewer
    rows the indices cover the new range.

    The compiled thunk keeps, per data input, the Sampler built for the last
    array it saw and reuses it while the array is the same object with the
    same shape and strides (a Sampler keeps a reference to its array, so the
    object cannot be replaced by another with the same id).  ``perform``
    itself builds Samplers afresh on every call.

    The gradient with respect to ``data_j`` scatters (adds) the output
    gradient back to the rows the batch was drawn from; with respect to the
    state it is undefined.
    """

    __props__ = ("sizes", "keys", "replace", "broadcastable", "epochs", "shard")

    def __init__(self, sizes, keys, replace=True, broadcastable=None, epochs=0, shard=None):
        sizes = tuple(tuple(None if s is None else int(s) for s in per) for per in sizes)
        keys = tuple(tuple(None if k is None else (int(k[0]), int(k[1])) for k in per)
                     for per in keys)
        if len(sizes) == 0 or len(sizes) != len(keys):
            raise ValueError(f"sizes and keys need one entry per data input, got "
                             f"{len(sizes)} and {len(keys)}")
        for j, (s, k) in enumerate(zip(sizes, keys)):
            if len(s) != len(k) or any((a is None) != (b is None) for a, b in zip(s, k)):
                raise ValueError(f"sizes[{j}]={s} and keys[{j}] must have a key exactly "
                                 f"where a size is given")
            if all(a is None for a in s):
                raise ValueError(f"sizes[{j}]={s} must sample at least one axis")
        if broadcastable is not None:
            broadcastable = tuple(tuple(bool(b) for b in per) for per in broadcastable)
            if len(broadcastable) != len(sizes) or any(
                    len(b) != len(s) for b, s in zip(broadcastable, sizes)):
                raise ValueError(f"broadcastable={broadcastable} must have one pattern per "
                                 f"data input, one entry per axis, as sizes={sizes}")
            for j, (b, s) in enumerate(zip(broadcastable, sizes)):
                for k, (bk, sk) in enumerate(zip(b, s)):
                    if bk and sk is not None and sk != 1:
                        raise ValueError(
                            f"axis {k} of batch {j} is sampled with size {sk}, so it "
                            f"cannot be broadcastable (broadcastable={b})")
        self.sizes = sizes
        self.keys = keys
        self.replace = bool(replace) and not epochs
        self.broadcastable = broadcastable
        # epochs: the core's epoch mode (1 wrap, 2 drop; 0 none); shard:
        # (rank, world) of the first sampled axis of each input, or None.
        self.epochs = int(epochs)
        self.shard = None if shard is None else (int(shard[0]), int(shard[1]))

    def __str__(self):
        spec = ";".join(",".join("-" if s is None else str(s) for s in per)
                        for per in self.sizes)
        mode = ("" if self.replace and not self.epochs else
                f",epochs={self.epochs}" if self.epochs else ",noreplace")
        shard = "" if self.shard is None else f",shard={self.shard[0]}/{self.shard[1]}"
        return f"{type(self).__name__}{{{spec}{mode}{shard}}}"

    # -- graph ---------------------------------------------------------------
    def make_node(self, state, *data):
        state = tt.as_tensor_variable(state)
        if not isinstance(state.type, tt.TensorType) or state.type.ndim != 0 \
                or state.type.dtype != "int64":
            raise TypeError(f"state must be an int64 scalar, got {state.type}")
        if len(data) != len(self.sizes):
            raise TypeError(f"{self} takes {len(self.sizes)} data input(s), got {len(data)}")
        data = [tt.as_tensor_variable(d) for d in data]
        outs = [state.type()]
        for j, (d, sizes) in enumerate(zip(data, self.sizes)):
            if not isinstance(d.type, tt.TensorType):
                raise TypeError(f"data input {j} must be a tensor, got {d.type}")
            if d.type.ndim != len(sizes):
                raise TypeError(f"data input {j} must have ndim={len(sizes)}, got "
                                f"{d.type} (ndim={d.type.ndim})")
            if self.broadcastable is None:
                bcast = tuple(False if s is not None else b
                              for s, b in zip(sizes, d.type.broadcastable))
            else:
                bcast = self.broadcastable[j]
                for k, (bk, sk) in enumerate(zip(bcast, sizes)):
                    if bk and sk is None and not d.type.broadcastable[k]:
                        raise TypeError(
                            f"axis {k} of batch {j} is taken whole from data of type "
                            f"{d.type}, which is not broadcastable on that axis")
            outs.append(tt.TensorType(d.type.dtype, bcast)())
        return Apply(self, [state] + data, outs)

    def infer_shape(self, fgraph, node, shapes):
        out = [()]
        for dshape, sizes in zip(shapes[1:], _out_sizes(self.sizes, self.shard)):
            out.append(tuple(dshape[k] if s is None else tt.constant(s, dtype="int64")
                             for k, s in enumerate(sizes)))
        return out

    def connection_pattern(self, node):
        m = len(self.sizes)
        rows = [[True] * (m + 1)]
        for j in range(m):
            rows.append([i == j + 1 for i in range(m + 1)])
        return rows

    def L_op(self, inputs, outputs, output_grads):
        state, data = inputs[0], inputs[1:]
        grads = [grad_undefined(self, 0, state, "the state is the step counter of a "
                                "random stream")]
        for j, (x, gz) in enumerate(zip(data, output_grads[1:])):
            if isinstance(gz.type, DisconnectedType):
                grads.append(DisconnectedType()())
                continue
            grads.append(_scatter_add(self, j, state, x, gz))
        return grads

    # -- evaluation ----------------------------------------------------------
    def samplers(self, data):
        """Fresh Samplers for the data inputs, checked for alignment."""
        samplers = [_sampler(d, s, k, self.replace, self.epochs, self.shard)
                    for d, s, k in zip(data, self.sizes, self.keys)]
        if len(samplers) > 1:
            self._check_aligned(data)
        return samplers

    def _check_aligned(self, data):
        seen = {}
        for j, (d, sizes) in enumerate(zip(data, self.sizes)):
            for k, s in enumerate(sizes):
                if s is not None:
                    seen.setdefault(k, []).append((j, d.shape[k]))
        for k, lengths in seen.items():
            if len({n for _, n in lengths}) > 1:
                raise ValueError(
                    f"aligned minibatches need equal lengths along sampled axis {k}, got "
                    + ", ".join(f"data {j}: {n}" for j, n in lengths))

    def perform(self, node, inputs, outputs, params=None):
        step = _step_of(inputs[0])
        samplers = self.samplers(inputs[1:])
        outs = [None if out[0] is None or out[0].shape != s.shape else out[0]
                for s, out in zip(samplers, outputs[1:])]
        for out, batch in zip(outputs[1:], draw_group(samplers, step, outs)):
            out[0] = batch
        outputs[0][0] = np.array(step + 1, dtype=np.int64)

    def make_py_thunk(self, node, storage_map, compute_map, no_recycling, debug=False):
        """A thunk that reuses its Samplers while the data arrays stay the same
        (see the class Notes); ``perform`` otherwise."""
        if debug:
            return super().make_py_thunk(node, storage_map, compute_map, no_recycling,
                                         debug=True)
        in_storage = [storage_map[v] for v in node.inputs]
        out_storage = [storage_map[v] for v in node.outputs]
        computed = [compute_map[v] for v in node.outputs]
        state_in, data_in = in_storage[0], in_storage[1:]
        state_out, batch_out = out_storage[0], out_storage[1:]
        # Per data input: [array, shape, strides, sampler, batch shape].
        cache = [[None, None, None, None, None] for _ in data_in]
        op = self
        single = len(data_in) == 1
        int64 = np.int64
        array = np.array

        def rebuild(data):
            samplers = op.samplers(data)
            for c, d, s in zip(cache, data, samplers):
                c[:] = [d, d.shape, d.strides, s, s.shape]

        def thunk():
            step = _step_of(state_in[0])
            for c, d_in in zip(cache, data_in):
                d = d_in[0]
                if d is not c[0] or d.shape != c[1] or d.strides != c[2]:
                    rebuild([x[0] for x in data_in])
                    break
            if single:
                c, out = cache[0], batch_out[0]
                o = out[0]
                out[0] = c[3].draw(step, None if o is None or o.shape != c[4] else o)
            else:
                outs = [None if out[0] is None or out[0].shape != c[4] else out[0]
                        for c, out in zip(cache, batch_out)]
                for out, batch in zip(batch_out, draw_group([c[3] for c in cache], step, outs)):
                    out[0] = batch
            state_out[0] = array(step + 1, dtype=int64)
            for flag in computed:
                flag[0] = True

        thunk.inputs = in_storage
        thunk.outputs = out_storage
        thunk.perform = self.perform
        thunk.lazy = False
        return thunk

    # -- C implementation ----------------------------------------------------
    # The C thunk keeps the Samplers in its struct and calls Sampler.draw
    # (draw_group for several data inputs) through the C API: no Python
    # frame per call.  Measured (2-core AMD
    # EPYC VM, min of 9 x 20000 calls, theano.function([], x), n=1e6 float64
    # rows, batch 128): Python thunk 4.5 us, C thunk 3.5 us, the reference
    # graph 5.9 us, an empty function 1.6 us, the same function with batch 1
    # 2.8 us.  The C thunk wins and is the default; the Python thunk runs
    # where Theano has no compiler (and under linker="py").  Calling the
    # kernel's draw_gather capsule directly would need the Sampler's plan,
    # which _gather does not export; the Python-level call costs ~0.1 us of
    # the 3.5 (caching the bound method instead of looking it up: no change).
    # Bump c_code_cache_version on every change of the C code: Theano reuses
    # a cached module whose version matches without looking at the source.
    # The Op itself is passed as the node's params (a Python object), so the
    # sizes and keys are not in
    # the C source: every MinibatchOp with the same input types shares one
    # compiled module (Theano's cache matches modules by source hash).
    params_type = generic

    def get_params(self, node):
        return self

    def _c_samplers(self, *data):
        """Called by the C code when its data arrays changed: the Samplers'
        bound ``draw`` methods, the Samplers, a tuple of the Samplers and
        ``draw_group`` (which the C code calls when there are several)."""
        samplers = self.samplers(data)
        return tuple(s.draw for s in samplers) + tuple(samplers) + (tuple(samplers), draw_group)

    def c_headers(self, **kwargs):
        return ["<string.h>"]

    def c_support_code_struct(self, node, name):
        m = len(self.sizes)
        return f"""
        PyObject *mb_samplers_{name};  /* (draw methods..., Samplers...) or NULL */
        PyObject *mb_data_{name}[{m}];          /* the arrays they read (owned) */
        npy_intp mb_dims_{name}[{m}][NPY_MAXDIMS];
        npy_intp mb_strides_{name}[{m}][NPY_MAXDIMS];
        npy_intp mb_oshape_{name}[{m}][NPY_MAXDIMS];
        """

    def c_init_code_struct(self, node, name, sub):
        m = len(self.sizes)
        return f"""
        mb_samplers_{name} = NULL;
        for (int j = 0; j < {m}; j++) mb_data_{name}[j] = NULL;
        """

    def c_cleanup_code_struct(self, node, name):
        m = len(self.sizes)
        return f"""
        Py_XDECREF(mb_samplers_{name});
        for (int j = 0; j < {m}; j++) Py_XDECREF(mb_data_{name}[j]);
        """

    def c_code(self, node, name, inputs, outputs, sub):
        state, data = inputs[0], inputs[1:]
        new_state, batches = outputs[0], outputs[1:]
        fail, params = sub["fail"], sub["params"]
        nds = [v.ndim for v in node.inputs[1:]]
        m = len(data)
        S, D, ST, OS = (f"mb_samplers_{name}", f"mb_data_{name}", f"mb_strides_{name}",
                        f"mb_oshape_{name}")
        DIMS = f"mb_dims_{name}"
        check = "\n".join(
            f"""if (!mb_stale && ((PyObject *){d} != {D}[{j}]
                    || memcmp(PyArray_DIMS({d}), {DIMS}[{j}], {nd} * sizeof(npy_intp))
                    || memcmp(PyArray_STRIDES({d}), {ST}[{j}], {nd} * sizeof(npy_intp))))
                mb_stale = 1;"""
            for j, (d, nd) in enumerate(zip(data, nds)))
        args = ", ".join(f"(PyObject *){d}" for d in data)
        remember = "\n".join(
            f"""Py_XDECREF({D}[{j}]);
            Py_INCREF((PyObject *){d});
            {D}[{j}] = (PyObject *){d};
            memcpy({DIMS}[{j}], PyArray_DIMS({d}), {nd} * sizeof(npy_intp));
            memcpy({ST}[{j}], PyArray_STRIDES({d}), {nd} * sizeof(npy_intp));
            if (mb_shape_of(PyTuple_GET_ITEM({S}, {m + j}), {OS}[{j}], {nd})) {{ {fail} }}"""
            for j, (d, nd) in enumerate(zip(data, nds)))
        reusable = [
            f"""({b} != NULL && PyArray_NDIM({b}) == {nd}
                 && !memcmp(PyArray_DIMS({b}), {OS}[{j}], {nd} * sizeof(npy_intp))
                 && PyArray_IS_C_CONTIGUOUS({b}) && PyArray_ISWRITEABLE({b}))"""
            for j, (b, nd) in enumerate(zip(batches, nds))]
        if m == 1:
            # One input: Sampler.draw(step, out or None).
            b = batches[0]
            draws = f"""{{
                PyObject *mb_args[2], *mb_res;
                mb_args[0] = mb_pystep;
                mb_args[1] = {reusable[0]} ? (PyObject *){b} : Py_None;
                mb_res = PyObject_Vectorcall(PyTuple_GET_ITEM({S}, 0), mb_args, 2, NULL);
                if (mb_res == NULL) {{ Py_DECREF(mb_pystep); {fail} }}
                Py_XDECREF({b});
                {b} = (PyArrayObject *)mb_res;
            }}"""
        else:
            # Several: draw_group(samplers, step, outs), the indices drawn once.
            fill = "\n".join(
                f"""mb_o = {ok} ? (PyObject *){b} : Py_None;
                Py_INCREF(mb_o);
                PyTuple_SET_ITEM(mb_outs, {j}, mb_o);"""
                for j, (b, ok) in enumerate(zip(batches, reusable)))
            take = "\n".join(
                f"""Py_XDECREF({b});
                {b} = (PyArrayObject *)PyTuple_GET_ITEM(mb_res, {j});
                Py_INCREF({b});"""
                for j, b in enumerate(batches))
            draws = f"""{{
                PyObject *mb_args[3], *mb_res, *mb_o;
                PyObject *mb_outs = PyTuple_New({m});
                if (mb_outs == NULL) {{ Py_DECREF(mb_pystep); {fail} }}
                {fill}
                mb_args[0] = PyTuple_GET_ITEM({S}, {2 * m});
                mb_args[1] = mb_pystep;
                mb_args[2] = mb_outs;
                mb_res = PyObject_Vectorcall(PyTuple_GET_ITEM({S}, {2 * m + 1}), mb_args, 3, NULL);
                Py_DECREF(mb_outs);
                if (mb_res == NULL) {{ Py_DECREF(mb_pystep); {fail} }}
                {take}
                Py_DECREF(mb_res);
            }}"""
        return f"""
        {{
            npy_int64 mb_step = *(npy_int64 *)PyArray_DATA({state});
            int mb_stale = {S} == NULL;
            PyObject *mb_pystep;
            if (mb_step < 0) {{
                PyErr_Format(PyExc_ValueError, "the minibatch state must be >= 0, got %lld",
                             (long long)mb_step);
                {fail}
            }}
            if (mb_step == NPY_MAX_INT64) {{
                PyErr_SetString(PyExc_OverflowError, "{_LAST_STATE_MSG}");
                {fail}
            }}
            {check}
            if (mb_stale) {{
                PyObject *mb_new = PyObject_CallMethod({params}, "_c_samplers", "({"O" * len(data)})",
                                                       {args});
                if (mb_new == NULL) {{ {fail} }}
                Py_XDECREF({S});
                {S} = mb_new;
                {remember}
            }}
            mb_pystep = PyLong_FromLongLong(mb_step);
            if (mb_pystep == NULL) {{ {fail} }}
            {draws}
            Py_DECREF(mb_pystep);
            Py_XDECREF({new_state});
            {new_state} = (PyArrayObject *)PyArray_SimpleNew(0, NULL, NPY_INT64);
            if ({new_state} == NULL) {{ {fail} }}
            *(npy_int64 *)PyArray_DATA({new_state}) = mb_step + 1;
        }}
        """

    def c_support_code(self, **kwargs):
        return """
        /* Copy a Sampler's .shape (a tuple of nd ints) into shape; 0 or -1. */
        static int mb_shape_of(PyObject *sampler, npy_intp *shape, int nd) {
            PyObject *t = PyObject_GetAttrString(sampler, "shape");
            int k;
            if (t == NULL) return -1;
            if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != nd) {
                Py_DECREF(t);
                PyErr_SetString(PyExc_RuntimeError, "Sampler.shape has the wrong length");
                return -1;
            }
            for (k = 0; k < nd; k++) {
                shape[k] = PyLong_AsSsize_t(PyTuple_GET_ITEM(t, k));
                if (shape[k] == -1 && PyErr_Occurred()) { Py_DECREF(t); return -1; }
            }
            Py_DECREF(t);
            return 0;
        }
        """

    def c_code_cache_version(self):
        return (4,)


class MinibatchIndices(Op):
    """The indices a ``MinibatchOp`` batch is drawn from.

    ``MinibatchIndices(sizes, keys, replace)(state, data)`` returns one int64
    vector per sampled axis of ``data``, in axis order: the indices of batch
    ``state`` (``Sampler.indices``).  Only ``data.shape`` is read.  Used by the
    gradient of ``MinibatchOp``.
    """

    __props__ = ("sizes", "keys", "replace", "epochs", "shard")

    def __init__(self, sizes, keys, replace=True, epochs=0, shard=None):
        self.sizes = tuple(sizes)
        self.keys = tuple(keys)
        self.replace = bool(replace)
        self.epochs = int(epochs)
        self.shard = shard

    def make_node(self, state, data):
        state = tt.as_tensor_variable(state)
        data = tt.as_tensor_variable(data)
        if state.type.ndim != 0 or state.type.dtype != "int64":
            raise TypeError(f"state must be an int64 scalar, got {state.type}")
        if data.type.ndim != len(self.sizes):
            raise TypeError(f"data must have ndim={len(self.sizes)}, got {data.type}")
        outs = [tt.lvector() for s in self.sizes if s is not None]
        return Apply(self, [state, data], outs)

    def perform(self, node, inputs, outputs):
        state, data = inputs
        sampler = _sampler(data, self.sizes, self.keys, self.replace, self.epochs, self.shard)
        idx = [i for i in sampler.indices(_step_of(state)) if i is not None]
        for out, i in zip(outputs, idx):
            out[0] = i

    def infer_shape(self, fgraph, node, shapes):
        (sizes,) = _out_sizes([self.sizes], self.shard)
        return [(tt.constant(s, dtype="int64"),) for s in sizes if s is not None]

    def connection_pattern(self, node):
        n = len(node.outputs)
        return [[True] * n, [False] * n]

    def grad(self, inputs, output_grads):
        return [grad_undefined(self, 0, inputs[0]), DisconnectedType()()]


def _sampler(data, sizes, keys, replace, epochs, shard):
    """The core's Sampler for one data input of a MinibatchOp."""
    if epochs or shard is not None:
        return Sampler(data, sizes, keys, replace and not epochs, epochs, shard)
    return Sampler(data, sizes, keys, replace)


def _out_sizes(sizes, shard):
    """Per data input, the batch's size on each axis: a shard's share
    (size / world) on the first sampled axis."""
    out = []
    for per in sizes:
        per = list(per)
        if shard is not None:
            k = next(k for k, s in enumerate(per) if s is not None)
            per[k] //= shard[1]
        out.append(tuple(per))
    return out


def _scatter_add(op, j, state, x, gz):
    """Gradient of batch ``j`` of ``op`` with respect to its data ``x``."""
    sizes = op.sizes[j]
    idx = MinibatchIndices(sizes, op.keys[j], op.replace, op.epochs, op.shard)(state, x)
    if not isinstance(idx, (list, tuple)):
        idx = [idx]
    if x.dtype in tt.discrete_dtypes:
        gx = x.zeros_like(dtype=theano.config.floatX)
        gz = tt.cast(gz, gx.dtype)
    else:
        gx = x.zeros_like()
    sampled = [k for k, s in enumerate(sizes) if s is not None]
    if sampled == [0]:
        return advanced_inc_subtensor1(gx, gz, idx[0])
    # Outer-product index over axes 0..last sampled (trailing whole axes are
    # implicit full slices), as np.ix_ builds it; duplicates accumulate.
    last = sampled[-1]
    it = iter(idx)
    index = []
    for k in range(last + 1):
        ik = next(it) if sizes[k] is not None else tt.arange(x.shape[k])
        pattern = ["x"] * (last + 1)
        pattern[k] = 0
        index.append(ik.dimshuffle(pattern))
    return tt.inc_subtensor(gx[tuple(index)], gz)


# ---------------------------------------------------------------- variables

# Live Minibatch variables, for align_minibatches() without arguments.
_LIVE = weakref.WeakSet()


def _prepare(data, dtype, in_memory_size):
    """The array a Minibatch reads: cast to floatX when float and no dtype is
    given (PyMC3's rule), cut to ``in_memory_size``; not copied otherwise."""
    arr = np.asarray(data)
    if dtype is None and arr.dtype.kind == "f":
        dtype = theano.config.floatX
    arr = check_data(arr, dtype)
    index = parse_in_memory_size(in_memory_size, arr.ndim)
    if index:
        arr = np.array(arr[index], order="C")
    return arr, index


def _patterns(broadcastable, plans, shape):
    """(batch pattern, shared-data pattern) for a user's ``broadcastable``."""
    nd = len(plans)
    if broadcastable is None:
        return (False,) * nd, (False,) * nd
    out = tuple(bool(b) for b in broadcastable)
    if len(out) != nd:
        raise ValueError(f"broadcastable must have {nd} entries (the data's ndim), got "
                         f"{broadcastable!r}")
    for k, (p, b) in enumerate(zip(plans, out)):
        length = shape[k] if p.size is None else p.size
        if b and length != 1:
            raise ValueError(f"broadcastable[{k}] is True but axis {k} of every batch "
                             f"has length {length}: broadcastable={broadcastable!r}")
    return out, tuple(b and p.size is None for p, b in zip(plans, out))


class Minibatch(tt.TensorVariable):
    """Multidimensional minibatch that is a pure TensorVariable.

    The output of a ``MinibatchOp`` over ``self.shared``: every evaluation of
    a compiled function that contains it yields the next batch.

    Parameters
    ----------
    data : array_like
        The data, any layout.  Float data is cast to ``theano.config.floatX``
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
    shared : TensorSharedVariable
        The data batches are read from.
    minibatch : TensorVariable
        The minibatch expression, ``self`` (in PyMC3 a view of it): replace it
        with ``shared`` in ``theano.clone`` to evaluate on the whole data.
    rng_state : TensorSharedVariable
        int64 scalar, the step of the next batch; its ``default_update`` is
        the Op's ``state + 1`` output.
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
    >>> import numpy as np
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
        _make_group([self], [data], batch_size, dtype, [broadcastable], [name],
                    random_seed, [update_shared_f], in_memory_size, replace, name,
                    epochs, epoch_end, shard)

    # -- data --------------------------------------------------------------
    def set_value(self, value):
        """Read batches from ``value`` from now on; the stream goes on.

        ``value`` must have this variable's ndim and a dtype that casts to its
        dtype under ``same_kind`` rules (it is cast, and cut to
        ``in_memory_size``, as the constructor does); sampled axes may change
        length.  ``x.shared.set_value(v)`` is the same without the cast and
        cut.  On any error the old data stays in place.
        """
        arr = np.asarray(value)
        if arr.dtype.hasobject or not np.can_cast(arr.dtype, self.dtype, "same_kind"):
            raise TypeError(f"value must have a dtype that casts to {self.dtype}, "
                            f"got {arr.dtype}")
        arr = check_data(arr.astype(self.dtype, copy=False), None, "value")
        if self._in_memory:
            arr = np.array(arr[self._in_memory], order="C")
        _build(arr, self._plans, self._replace, "value", self._epochs, self._shard)
        self.shared.set_value(arr, borrow=True)

    def update_shared(self):
        """``set_value(update_shared_f())``."""
        if self.update_shared_f is None:
            raise ValueError("update_shared_f is None: pass update_shared_f=callable "
                             "to Minibatch to use update_shared()")
        self.set_value(self.update_shared_f())

    @property
    def total_size(self):
        return total_size_of(self.batch_size, self._plans,
                             self.shared.get_value(borrow=True).shape)

    # -- resumable state -----------------------------------------------------
    def state_dict(self):
        """As ``mbcore.Minibatch.state_dict``: the step of ``rng_state``
        (shared by the variables of one ``minibatches`` call, whose arrays'
        shapes are all in it), the mode, the seed and the fingerprints."""
        return make_state("mbcore.adapters.theano.Minibatch",
                          int(self.rng_state.get_value()), self._replace, self.epochs,
                          self.epoch_end, self.random_seed, self._plans,
                          [v.shared.get_value(borrow=True).shape for v in self._group],
                          self.shard)

    def load_state_dict(self, state):
        """Set ``rng_state`` (for every variable of its group) to the state's
        step; a state of another spec, seed, mode or data shape is a
        ValueError, and nothing changes."""
        want = self.state_dict()
        check_state(state, want)
        self.rng_state.set_value(np.array(state["step"], dtype=np.int64))

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


def _make_group(variables, arrays, batch_size, dtype, broadcastables, names,
                random_seed, update_shared_fs, in_memory_size, replace, state_name,
                epochs=False, epoch_end="wrap", shard=None):
    """Turn ``variables`` (fresh Minibatch instances) into the outputs of one
    MinibatchOp over ``arrays`` with one state."""
    if not isinstance(replace, (bool, np.bool_)):
        raise TypeError(f"replace must be a bool, got {type(replace).__name__} {replace!r}")
    mode = _epoch_mode(epochs, epoch_end)
    if mode == EPOCH_ENDS["short"]:
        raise ValueError("epoch_end='short' is not available for Theano variables (a short "
                         "batch would change the variable's shape): use 'wrap' or 'drop'")
    replace = bool(replace) and not mode
    prepared = [_prepare(a, dtype, in_memory_size) for a in arrays]
    plans = [parse_batch_size(batch_size, arr.ndim, random_seed) for arr, _ in prepared]
    shard = _check_shard(shard, plans[0])
    if len(arrays) > 1:
        # The core's checks, messages included (lengths along sampled axes).
        Minibatches([arr for arr, _ in prepared], batch_size, None, random_seed, replace,
                    epochs=bool(mode), epoch_end=epoch_end, shard=shard)
    samplers = [_build(arr, p, replace, epochs=mode, shard=shard)
                for (arr, _), p in zip(prepared, plans)]
    patterns = [_patterns(b, p, arr.shape)
                for b, p, (arr, _) in zip(broadcastables, plans, prepared)]
    op = MinibatchOp(sizes=[tuple(ap.size for ap in p) for p in plans],
                     keys=[tuple(None if ap.size is None else seed_key(ap.seed) for ap in p)
                           for p in plans],
                     replace=replace,
                     broadcastable=[out for out, _ in patterns], epochs=mode, shard=shard)
    state = theano.shared(np.array(0, dtype=np.int64), name=f"{state_name}.rng_state")
    shared = [theano.shared(arr, name=f"{name}.shared", borrow=True,
                            broadcastable=sb)
              for (arr, _), name, (_, sb) in zip(prepared, names, patterns)]
    model = op.make_node(state, *shared)    # checks and output types
    new_state = model.outputs[0].type()
    for var, ref, name in zip(variables, model.outputs[1:], names):
        tt.TensorVariable.__init__(var, ref.type, None, None, name)
    Apply(op, model.inputs, [new_state] + list(variables))
    state.default_update = new_state
    new_state.tag.test_value = np.array(1, dtype=np.int64)
    for var, sh, s, p, (arr, index), f in zip(variables, shared, samplers, plans, prepared,
                                             update_shared_fs):
        if f is not None and not callable(f):
            raise TypeError(f"update_shared_f must be callable, got {f!r}")
        var.shared = sh
        var.minibatch = var
        var.rng_state = state
        var.update_shared_f = f
        var.batch_size = batch_size
        var.random_seed = random_seed
        var.in_memory_size = in_memory_size
        var._in_memory = index
        var._plans = p
        var._replace = bool(replace)
        var._group = tuple(variables)
        var._epochs = mode
        var._shard = shard
        var.epochs = bool(mode)
        var.epoch_end = epoch_end
        var.shard = shard
        var.tag.test_value = s.draw(0)
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
    >>> import numpy as np
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
    return tuple(_make_group(variables, list(arrays), batch_size, dtype, list(broadcastable),
                             names, random_seed, [None] * len(arrays), in_memory_size,
                             replace, name, epochs, epoch_end, shard))


def align_minibatches(batches=None):
    """Restart the streams of Minibatch variables, so that they select the
    same rows from now on (each next batch is batch 0 of its stream).

    Parameters
    ----------
    batches : iterable of Minibatch, optional
        Default: every live Minibatch variable of this module.

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


# ---------------------------------------------------------------- generator

class GeneratorExhausted(StopIteration):
    """The generator behind a ``generator`` variable has no more items."""


class _Source:
    """The GeneratorAdapter (and default) behind a GeneratorOp; compared by
    identity, so two generator variables never merge, and replaced in place
    by ``set_gen``, so the Op's props never change."""

    def __init__(self, adapter, dtype, ndim):
        self.dtype = dtype
        self.ndim = ndim
        self.gen = adapter
        self.default = None


def _adapt(gen):
    """A core GeneratorAdapter of ``gen`` (itself if it is one) and the dtype
    of its variable (floatX for float items, PyMC3's rule)."""
    adapter = gen if isinstance(gen, GeneratorAdapter) else GeneratorAdapter(gen)
    return adapter, np.dtype(adapter.tensortype.dtype)


class GeneratorOp(Op):
    """An Op without inputs whose every evaluation yields the next item of a
    Python generator (or its default once the generator is exhausted):
    PyMC3's ``pymc3.theanof.GeneratorOp``.

    ``GeneratorOp(gen, default=None)()`` is the variable (a
    ``GeneratorVariable``, with ``set_gen`` and ``set_default``).

    Parameters
    ----------
    gen : iterator of array_like, or GeneratorAdapter
        A generator or any iterator (PyMC3's ``GeneratorAdapter`` included)
        or an ``mbcore.GeneratorAdapter``; its first item decides the dtype
        (float items are cast to floatX) and ndim, and is the test value.
    default : array_like, optional
        Yielded once ``gen`` is exhausted; without it an exhausted generator
        raises ``GeneratorExhausted`` (a StopIteration) naming the variable.

    The generator is the Op's one piece of mutable state, by nature; the Op
    is never constant-folded, and two generator variables never merge (their
    sources compare by identity).  Items are copied and cast to the
    variable's dtype, so downstream in-place Ops cannot write into the
    generator's arrays; an item of another ndim, or whose values the first
    item's dtype cannot hold, raises (``mbcore.GeneratorAdapter``).
    """

    __props__ = ("source",)

    def __init__(self, gen, default=None):
        super().__init__()
        adapter, dtype = _adapt(gen)
        self.source = _Source(adapter, dtype, adapter.ndim)
        self.set_default(default)

    @property
    def generator(self):
        """The ``mbcore.GeneratorAdapter`` items come from."""
        return self.source.gen

    @property
    def default(self):
        return self.source.default

    def make_node(self, *inputs):
        if inputs:
            raise TypeError(f"GeneratorOp takes no inputs, got {len(inputs)}")
        src = self.source
        out = GeneratorVariable(self, tt.TensorType(src.dtype, (False,) * src.ndim))
        out.tag.test_value = np.array(src.gen.test_value, dtype=src.dtype)
        return Apply(self, [], [out])

    # The test value is the first item, set by make_node: computing one by
    # evaluating the Op would consume an item.
    __call__ = theano.config.change_flags(compute_test_value="off")(Op.__call__)

    def perform(self, node, inputs, outputs, params=None):
        src = self.source
        try:
            item = next(src.gen)
        except StopIteration:
            if src.default is None:
                raise GeneratorExhausted(
                    f"the generator of variable {node.outputs[0].name!r} is exhausted; "
                    f"give it a new one with set_gen(gen) or a value to yield from now "
                    f"on with set_default(value)") from None
            item = src.default
        except (TypeError, ValueError) as e:
            if type(e) not in (TypeError, ValueError):
                raise
            # An item the adapter refused (ndim, values): say whose it was.
            raise type(e)(f"the generator of variable {node.outputs[0].name!r}: {e}") \
                from None
        # The adapter yields exact items of the first item's dtype; float
        # items become floatX here, as PyMC3 casts them.
        outputs[0][0] = np.array(item, dtype=src.dtype)

    def do_constant_folding(self, fgraph, node):
        return False

    def set_gen(self, gen):
        """Pull items from ``gen`` from now on; it must yield the same type
        (ValueError otherwise, and the old generator stays)."""
        adapter, dtype = _adapt(gen)
        src = self.source
        if dtype != src.dtype or adapter.ndim != src.ndim:
            raise ValueError(f"the new generator yields {dtype} items with ndim="
                             f"{adapter.ndim}; the variable has type "
                             f"{tt.TensorType(src.dtype, (False,) * src.ndim)}")
        src.gen = adapter

    def set_default(self, value):
        """Yield ``value`` once the generator is exhausted (None: raise).  It
        must have the items' ndim and values their dtype holds exactly
        (ValueError otherwise)."""
        src = self.source
        if value is None:
            src.default = None
            return
        src.default = np.array(src.gen.convert(value, "default"), dtype=src.dtype)


class GeneratorVariable(tt.TensorVariable):
    """The output of a ``GeneratorOp``; see :func:`generator`.  ``op`` (also
    ``gen_op``) is the Op, as on PyMC3's ``GenTensorVariable``."""

    def __init__(self, op, type, name=None):
        super().__init__(type, None, None, name)
        self.gen_op = op

    @property
    def op(self):
        return self.gen_op

    def set_gen(self, gen):
        """Pull items from ``gen`` from now on; it must yield the same type."""
        self.gen_op.set_gen(gen)

    def set_default(self, value):
        """Yield ``value`` once the generator is exhausted (None: raise)."""
        self.gen_op.set_default(value)

    def clone(self):
        cp = type(self)(self.gen_op, self.type, self.name)
        cp.tag = copy(self.tag)
        return cp


_generator_names = itertools.count()


def generator(gen, default=None, name=None):
    """A variable whose every evaluation pulls the next item of ``gen``
    (PyMC3's ``pm.generator``): ``GeneratorOp(gen, default)()``, named.

    Parameters
    ----------
    gen : iterator of array_like, or GeneratorAdapter
        Items of one dtype and ndim (the first one decides; float items are
        cast to floatX).  Its first item is pulled now (the test value) and is
        also the first item yielded.
    default : array_like, optional
        Yielded once ``gen`` is exhausted; without it an exhausted generator
        raises ``GeneratorExhausted`` (a StopIteration) naming the variable.
    name : str, optional

    Returns
    -------
    GeneratorVariable
        With ``set_gen(gen)`` and ``set_default(value)``.

    Examples
    --------
    >>> import numpy as np
    >>> from mbcore.adapters.theano import generator
    >>> v = generator(np.full(2, i) for i in range(3))
    >>> f = theano.function([], v * 1)
    >>> [int(f()[0]) for _ in range(3)]
    [0, 1, 2]
    """
    var = GeneratorOp(gen, default)()
    var.name = name if name is not None else f"generator_{next(_generator_names)}"
    return var
