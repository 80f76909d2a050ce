"""The C implementation of ``MinibatchDraw``: no Python frame per call.

The thunk's struct keeps the data arrays it last saw and ``spec.bind`` of
them (a C-level callable over the core's draw; ``spec.bind_one`` for one
array, which skips the group draw: a call of a function returning 128 rows
of a (1e6,) float64 vector took 1.26-1.30 us against 1.46-1.65 us with
``bind``, both C codes compiled in one process, best of 41 interleaved
rounds, three runs, 2-vCPU AMD EPYC Zen 5 VM), rebinding when an input is
another object; the batches of the previous call are drawn into when
PyTensor hands them back for reuse and they still fit.  The step is checked
by the core's ``BatchSpec.check_graph_step`` when it is out of range.
"""
import hashlib

from ._step import LAST_STEP

__all__ = ["c_code", "C_VERSION", "struct_support", "struct_init", "struct_cleanup"]


def struct_support(name):
    return f"PyObject *mb_bound_{name};\nPyObject *mb_data_{name};\n"


def struct_init(name):
    return f"mb_bound_{name} = NULL;\nmb_data_{name} = NULL;\n"


def struct_cleanup(name):
    return f"Py_XDECREF(mb_bound_{name});\nPy_XDECREF(mb_data_{name});\n"


C_CODE = """
{{
    npy_int64 t = ((npy_int64 *)PyArray_DATA({step}))[0];
    PyObject *outs = NULL, *res = NULL, *pystep = NULL, *o = NULL;
    if (t < 0 || t >= {last}LL) {{
        /* The core's check of the step raises the error. */
        PyObject *r = PyObject_CallMethod({params}, "check_graph_step", "L", (long long)t);
        Py_XDECREF(r);
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_RuntimeError, "step %lld out of range was not refused",
                         (long long)t);
        {fail}
    }}
    if (mb_data_{name} == NULL || !({same})) {{
        PyObject *data = PyTuple_Pack({m}, {data_args});
        PyObject *bind = data ? PyObject_GetAttrString({params}, "{bind}") : NULL;
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
{new_outs}
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

# Several arrays: ``outs`` is a list with one entry per array, ``res`` a
# tuple of the batches.  One array (``bind_one``): ``outs`` is the entry
# itself, ``res`` the batch.
C_NEW_OUTS = """
    outs = PyList_New({m});
    if (outs == NULL) {{ {fail} }}
"""

C_FIT = """
    o = Py_None;
    if ({b} != NULL && PyArray_IS_C_CONTIGUOUS({b}) && PyArray_ISWRITEABLE({b})
            && PyArray_NDIM({b}) == {ndim} && PyArray_TYPE({b}) == PyArray_TYPE({d})
            && {dims})
        o = (PyObject *){b};
    Py_INCREF(o);
    {put}
"""

C_STORE = """
    o = {get};
    Py_INCREF(o);
    Py_XDECREF({b});
    {b} = (PyArrayObject *)o;
"""

# The C code's cache version: a hash of its templates, so any change to them
# recompiles.
C_VERSION = hashlib.sha256((C_CODE + C_NEW_OUTS + C_FIT + C_STORE).encode()).hexdigest()[:16]


def c_code(spec, node, name, inp, out, sub):
    """The C code of ``MinibatchDraw(spec)`` for ``node``."""
    *data, step = inp
    *batches, nxt = out
    m = len(data)
    same = " && ".join(f"PyTuple_GET_ITEM(mb_data_{name}, {k}) == (PyObject *){d}"
                       for k, d in enumerate(data))
    fits = []
    for k, (d, b, var) in enumerate(zip(data, batches, node.inputs)):
        dims = " && ".join(
            f"PyArray_DIMS({b})[{a}] == "
            + (f"PyArray_DIMS({d})[{a}]" if size is None else f"{size}")
            for a, size in enumerate(spec.sizes(var.type.ndim)))
        put = "outs = o;" if m == 1 else f"PyList_SET_ITEM(outs, {k}, o);"
        fits.append(C_FIT.format(b=b, d=d, ndim=var.type.ndim, dims=dims, put=put))
    stores = "".join(C_STORE.format(b=b, get="res" if m == 1 else f"PyTuple_GET_ITEM(res, {k})")
                     for k, b in enumerate(batches))
    return C_CODE.format(
        name=name, step=step, nxt=nxt, m=m, same=same, fits="".join(fits), stores=stores,
        bind="bind_one" if m == 1 else "bind",
        new_outs="" if m == 1 else C_NEW_OUTS.format(m=m, fail=sub["fail"]),
        data_args=", ".join(f"(PyObject *){d}" for d in data), params=sub["params"],
        fail=sub["fail"], last=LAST_STEP)
