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
  backend, and ``step.set_value(t)`` moves the stream to batch ``t``.

The node is wrapped in PyMC's ``MinibatchOp`` (an inlined ``OpFromGraph``,
inputs ``(X, y, step)`` and outputs ``(X_batch, y_batch, step + 1)`` in the
order PyMC's own Minibatch uses), so PyMC finds it where it looks for
minibatches: the ``total_size`` warning, ``is_valid_observed``,
``extract_obs_data`` and ``remove_minibatched_nodes`` before posterior
predictive sampling.  Compilation inlines the wrapper away.

Backends: the C linker (PyTensor's default) runs the node through a Python
thunk that calls ``BatchSpec.draw`` with the output buffers of the previous
call, when PyTensor leaves them for reuse; the Numba linker through a
registered ``numba.objmode`` call of the same draw; the JAX linker (when
JAX is installed) through ``jax.pure_callback`` into the same draw.
"""
import hashlib
import sys

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.gradient import DisconnectedType, grad_not_implemented
from pytensor.graph.basic import Apply, Constant, Variable
from pytensor.graph.op import Op  # noqa: F401 (documented base)
from pytensor.link.c.op import COp
from pytensor.link.c.type import generic
from pytensor.graph.traversal import ancestors
from pytensor.tensor.random.op import RNGConsumerOp

from mbcore import BatchSpec

try:     # PyMC looks for its own MinibatchOp; without PyMC, the same wrapper
    from pymc.data import MinibatchOp as _Wrapper
except ImportError:       # pragma: no cover - PyMC is installed with the extra
    from pytensor.compile.builders import OpFromGraph

    class _Wrapper(OpFromGraph):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs, inline=True)

        def __str__(self):
            return "Minibatch"

__all__ = ["Minibatch", "MinibatchOp", "MinibatchDraw", "minibatch_step", "total_size"]

MinibatchOp = _Wrapper

# The state after a batch is step + 1, an int64: the last step it can draw.
_LAST_STEP = 2 ** 63 - 1


def _next_step(step):
    t = int(step)
    if t < 0:
        raise ValueError(f"the minibatch step must be >= 0, got {t}")
    if t >= _LAST_STEP:
        raise OverflowError(f"the minibatch step is {t}, the largest an int64 state can "
                            "advance from: set the step variable to an earlier step")
    return t


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
        outs = []
        for i, d in enumerate(data):
            if d.type.ndim < self.spec.min_ndim:
                raise ValueError(f"variable {i} must have at least ndim={self.spec.min_ndim} for "
                                 f"batch_size={self.spec.batch_size!r}, got ndim={d.type.ndim}")
            shape = tuple(n if p.size is None else p.size
                          for n, p in zip(d.type.shape, self.spec.plans(d.type.ndim)))
            outs.append(pt.tensor(dtype=d.type.dtype, shape=shape))
        return Apply(self, [*data, step], [*outs, step.type()])

    def infer_shape(self, fgraph, node, shapes):
        *data_shapes, _ = shapes
        out = []
        for d, shape in zip(node.inputs[:-1], data_shapes):
            plans = self.spec.plans(d.type.ndim)
            out.append(tuple(n if p.size is None else pt.constant(p.size, dtype="int64")
                             for n, p in zip(shape, plans)))
        return [*out, ()]

    def perform(self, node, inputs, output_storage):
        *data, step = inputs
        t = _next_step(step)
        outs = [_reusable(s[0], v) for s, v in zip(output_storage, node.outputs)]
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
            if not 0 <= t < _LAST_STEP:
                _next_step(t)      # raises
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
                bound[1] = spec.bind(*data)
                bound[0] = ids
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

    # -- C implementation: no Python frame per call.  The struct keeps the
    # data arrays it last saw and ``spec.bind`` of them (a C-level callable
    # over the core's draw), rebinding when an input is another object; the
    # batches of the previous call are drawn into when PyTensor hands them
    # back for reuse and they still fit.
    def c_support_code_struct(self, node, name):
        return f"PyObject *mb_bound_{name};\nPyObject *mb_data_{name};\n"

    def c_init_code_struct(self, node, name, sub):
        return f"mb_bound_{name} = NULL;\nmb_data_{name} = NULL;\n"

    def c_cleanup_code_struct(self, node, name):
        return f"Py_XDECREF(mb_bound_{name});\nPy_XDECREF(mb_data_{name});\n"

    def c_code(self, node, name, inp, out, sub):
        *data, step = inp
        *batches, nxt = out
        m = len(data)
        same = " && ".join(f"PyTuple_GET_ITEM(mb_data_{name}, {k}) == (PyObject *){d}"
                           for k, d in enumerate(data))
        fits = []
        for k, (d, b, var) in enumerate(zip(data, batches, node.inputs)):
            dims = " && ".join(
                f"PyArray_DIMS({b})[{a}] == "
                + (f"PyArray_DIMS({d})[{a}]" if p.size is None else f"{p.size}")
                for a, p in enumerate(self.spec.plans(var.type.ndim)))
            fits.append(_C_FIT.format(k=k, b=b, d=d, ndim=var.type.ndim, dims=dims))
        stores = "".join(_C_STORE.format(k=k, b=b) for k, b in enumerate(batches))
        return _C_CODE.format(
            name=name, step=step, nxt=nxt, m=m, same=same, fits="".join(fits), stores=stores,
            data_args=", ".join(f"(PyObject *){d}" for d in data), params=sub["params"],
            fail=sub["fail"], last=_LAST_STEP)

    def c_code_cache_version(self):
        return (1, _C_VERSION)

    def connection_pattern(self, node):
        m = len(node.inputs) - 1
        return [[i == j for j in range(m)] + [False] for i in range(m)] + \
               [[False] * m + [True]]

    def L_op(self, inputs, outputs, output_grads):
        *data, step = inputs
        return [grad_not_implemented(self, i, d, "the gradient of a minibatch with respect "
                                     "to its data") for i, d in enumerate(data)] + \
               [DisconnectedType()()]

    def __str__(self):
        return f"MinibatchDraw{{batch_size={self.spec.batch_size!r}}}"


_C_CODE = """
{{
    npy_int64 t = ((npy_int64 *)PyArray_DATA({step}))[0];
    PyObject *outs = NULL, *res = NULL, *pystep = NULL, *o = NULL;
    if (t < 0 || t >= {last}LL) {{
        if (t < 0)
            PyErr_Format(PyExc_ValueError, "the minibatch step must be >= 0, got %lld",
                         (long long)t);
        else
            PyErr_Format(PyExc_OverflowError, "the minibatch step is %lld, the largest an "
                         "int64 state can advance from: set the step variable to an earlier "
                         "step", (long long)t);
        {fail}
    }}
    if (mb_data_{name} == NULL || !({same})) {{
        PyObject *data = PyTuple_Pack({m}, {data_args});
        PyObject *bind = data ? PyObject_GetAttrString({params}, "bind") : NULL;
        PyObject *bound = bind ? PyObject_CallObject(bind, data) : NULL;
        Py_XDECREF(bind);
        if (bound == NULL) {{
            Py_XDECREF(data);
            {fail}
        }}
        Py_XDECREF(mb_bound_{name});
        Py_XDECREF(mb_data_{name});
        mb_bound_{name} = bound;
        mb_data_{name} = data;
    }}
    outs = PyList_New({m});
    if (outs == NULL) {{ {fail} }}
{fits}
    pystep = PyLong_FromLongLong(t);
    res = pystep ? PyObject_CallFunctionObjArgs(mb_bound_{name}, pystep, outs, NULL) : NULL;
    Py_XDECREF(pystep);
    Py_DECREF(outs);
    if (res == NULL) {{ {fail} }}
{stores}
    Py_DECREF(res);
    Py_XDECREF({nxt});
    {nxt} = (PyArrayObject *)PyArray_ZEROS(0, NULL, NPY_INT64, 0);
    if ({nxt} == NULL) {{ {fail} }}
    ((npy_int64 *)PyArray_DATA({nxt}))[0] = t + 1;
}}
"""

_C_FIT = """
    o = Py_None;
    if ({b} != NULL && PyArray_IS_C_CONTIGUOUS({b}) && PyArray_ISWRITEABLE({b})
            && PyArray_NDIM({b}) == {ndim} && PyArray_TYPE({b}) == PyArray_TYPE({d})
            && {dims})
        o = (PyObject *){b};
    Py_INCREF(o);
    PyList_SET_ITEM(outs, {k}, o);
"""

_C_STORE = """
    o = PyTuple_GET_ITEM(res, {k});
    Py_INCREF(o);
    Py_XDECREF({b});
    {b} = (PyArrayObject *)o;
"""

# The C code's cache version: a hash of its templates, so any change to them
# recompiles.
_C_VERSION = hashlib.sha256((_C_CODE + _C_FIT + _C_STORE).encode()).hexdigest()[:16]


def _reusable(value, var):
    """``value`` when a batch may be drawn into it, else None."""
    if (isinstance(value, np.ndarray) and value.flags.c_contiguous and value.flags.writeable
            and value.dtype == var.type.dtype):
        return value
    return None


# ------------------------------------------------------------------ the API

def _is_random(var):
    return any(v.owner is not None and isinstance(v.owner.op, RNGConsumerOp)
               for v in ancestors([var]))


def _static_value(var):
    if isinstance(var, Constant):
        return var.data
    if isinstance(var, SharedVariable):
        return var.get_value(borrow=True)
    return None


def Minibatch(variable, *variables, batch_size=128, random_seed=42, replace=True):
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
        index twice within a batch.

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
    spec = BatchSpec(batch_size, random_seed, replace)
    tensors = [pt.as_tensor_variable(v) for v in (variable, *variables)]
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


def minibatch_step(batch):
    """The shared int64 step variable of the stream ``batch`` comes from.

    ``minibatch_step(xb).set_value(t)`` makes the next batch batch ``t``;
    ``get_value()`` is the number of batches drawn since step 0.
    """
    node = batch.owner
    if node is None or not isinstance(node.op, MinibatchOp) or not isinstance(
            _inner_draw(node.op), MinibatchDraw):
        raise ValueError(f"{batch} is not a batch of mbcore.adapters.pytensor.Minibatch")
    return node.inputs[-1]


def _inner_draw(op):
    nodes = op.fgraph.apply_nodes
    return next((n.op for n in nodes if isinstance(n.op, MinibatchDraw)), None)


def total_size(batch):
    """What to pass as ``total_size`` for an observed ``batch``: PyMC's
    convention for this spec (an int for an int ``batch_size``, else a list),
    computed from the current data."""
    node = batch.owner
    draw = _inner_draw(node.op) if node is not None and isinstance(node.op, MinibatchOp) else None
    if not isinstance(draw, MinibatchDraw):
        raise ValueError(f"{batch} is not a batch of mbcore.adapters.pytensor.Minibatch")
    data = node.inputs[node.outputs.index(batch)]
    value = _static_value(data)
    shape = np.shape(value) if value is not None else tuple(data.shape.eval())
    return draw.spec.total_size(shape)


# ------------------------------------------------------------------ Numba

def _register_numba():
    try:
        import numba
        from pytensor.link.numba.dispatch.basic import (numba_funcify, numba_njit,
                                                        get_numba_type)
    except ImportError:       # pragma: no cover - numba comes with pytensor
        return

    @numba_funcify.register(MinibatchDraw)
    def numba_funcify_MinibatchDraw(op, node, **kwargs):
        # Batches are C-contiguous: saying so lets Numba pick contiguous loops
        # (np.dot) downstream.
        ret_sig = numba.types.Tuple([get_numba_type(o.type, layout="C") for o in node.outputs])
        draw = op.spec.draw
        n_out = len(node.outputs)

        def py_draw(inputs):
            *data, step = inputs
            t = _next_step(step)
            return (*draw(t, *data), np.array(t + 1, dtype=np.int64))

        if n_out == 2:
            @numba_njit
            def minibatch_draw(d0, step):
                with numba.objmode(ret=ret_sig):
                    ret = py_draw((d0, step))
                return ret
        elif n_out == 3:
            @numba_njit
            def minibatch_draw(d0, d1, step):
                with numba.objmode(ret=ret_sig):
                    ret = py_draw((d0, d1, step))
                return ret
        else:
            @numba_njit
            def minibatch_draw(*inputs):
                with numba.objmode(ret=ret_sig):
                    ret = py_draw(inputs)
                return ret
        return minibatch_draw


_register_numba()


# ------------------------------------------------------------------ JAX

_JAX_EXIT_HOOK = []


def _jax_drain_at_exit(jax):
    """Let JAX finish its callbacks and drop its compiled functions (which
    hold the host callbacks) before the interpreter finalizes: without this,
    a process that ran a host callback aborted at exit in about one run of
    three ("PyGILState_Release: thread state ... must be current"; jax
    0.10.2, CPU), none of twelve with it."""
    if not _JAX_EXIT_HOOK:
        import atexit

        def drain():
            jax.effects_barrier()
            jax.clear_caches()

        atexit.register(drain)
        _JAX_EXIT_HOOK.append(drain)


def _register_jax():
    try:
        import jax
        from pytensor.link.jax.dispatch import jax_funcify
    except ImportError:
        return

    @jax_funcify.register(MinibatchDraw)
    def jax_funcify_MinibatchDraw(op, node, **kwargs):
        _jax_drain_at_exit(jax)
        """A host callback into the core (``jax.pure_callback``): the step and
        the data that are not constants go to the host, the batches come
        back.  Constant data (NumPy arrays given to ``Minibatch``) stay on the
        host, read in place.  The step is an explicit input and output, so
        the function stays pure."""
        spec = op.spec
        inputs_ = node.inputs
        n_data = len(inputs_) - 1
        consts = {i: np.asarray(v.data) for i, v in enumerate(inputs_[:-1])
                  if isinstance(v, Constant)}
        passed = [i for i in range(n_data) if i not in consts]
        shapes_out = [(spec.batch_shape(np.shape(consts[i])) if i in consts else None,
                       np.dtype(inputs_[i].type.dtype)) for i in range(n_data)]

        def host(step, *moved):
            t = _next_step(step)
            data = [None] * n_data
            for i, c in consts.items():
                data[i] = c
            for i, d in zip(passed, moved):
                data[i] = np.asarray(d)
            return (*spec.draw(t, *data), np.array(t + 1, dtype=np.int64))

        def minibatch_draw(*inputs):
            shapes = [jax.ShapeDtypeStruct(shape if shape is not None
                                           else spec.batch_shape(inputs[i].shape), dtype)
                      for i, (shape, dtype) in enumerate(shapes_out)]
            shapes.append(jax.ShapeDtypeStruct((), np.int64))
            return jax.pure_callback(host, tuple(shapes), inputs[-1],
                                     *[inputs[i] for i in passed])

        return minibatch_draw


_register_jax()
