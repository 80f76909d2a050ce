/* The C implementation of MinibatchOp (mbcore.adapters.theano):
 *
 *     (state, data_0, ..., data_{m-1}) -> (state + 1, batch_0, ..., batch_{m-1})
 *
 * The batches come from spec.bind(data_0, ..., data_{m-1}), the C-level
 * callable over the core's draw that mbcore.BatchSpec.bind returns, called as
 * bound(state, outs) -> batches; with one data input, from spec.bind_one(data_0),
 * called as bound(state, out) -> batch, which skips the group draw.  A node
 * keeps the callable with the arrays it was bound
 * to, their shapes and strides, and the batch shapes (spec.batch_shape), and
 * binds again only when an input is another array or the same array with
 * another shape or strides.  A batch of the previous call that Theano hands
 * back is drawn into when it still fits.  No Python frame runs per call.
 *
 * Theano pastes this file in front of each node's code (c_support_code), after
 * Python.h and NumPy's headers, and compiles it as C++: it is written in the
 * common subset of C and C++.  Every Python object is looked up by name.
 */

/* One data input of a node: what its bound callable was made from. */
typedef struct {
    PyObject *data;                  /* the array bound (owned), or NULL */
    int nd;
    npy_intp dims[NPY_MAXDIMS];      /* its shape and strides when bound */
    npy_intp strides[NPY_MAXDIMS];
    npy_intp batch[NPY_MAXDIMS];     /* spec.batch_shape(data.shape) */
} mb_input;

static void mb_inputs_init(PyObject **bound, mb_input *in, int m)
{
    int j;
    *bound = NULL;
    for (j = 0; j < m; j++)
        in[j].data = NULL;
}

static void mb_inputs_clear(PyObject **bound, mb_input *in, int m)
{
    int j;
    Py_CLEAR(*bound);
    for (j = 0; j < m; j++)
        Py_CLEAR(in[j].data);
}

/* Read a tuple of nd ints (a shape) into out; 0, or -1 with an exception. */
static int mb_read_shape(PyObject *shape, npy_intp *out, int nd)
{
    int k;
    if (!PyTuple_Check(shape) || PyTuple_GET_SIZE(shape) != nd) {
        PyErr_Format(PyExc_RuntimeError, "BatchSpec.batch_shape gave %R, not a tuple of %d ints",
                     shape, nd);
        return -1;
    }
    for (k = 0; k < nd; k++) {
        out[k] = PyLong_AsSsize_t(PyTuple_GET_ITEM(shape, k));
        if (out[k] == -1 && PyErr_Occurred())
            return -1;
    }
    return 0;
}

/* Bind spec to the arrays data[0..m-1]: *bound and in[] change only when every
 * step succeeded.  0, or -1 with an exception (the spec's checks raise here). */
static int mb_bind(PyObject *spec, PyObject **bound, mb_input *in, int m,
                   PyArrayObject **data)
{
    npy_intp *shapes = (npy_intp *)PyMem_Malloc(m * NPY_MAXDIMS * sizeof(npy_intp));
    PyObject *args = NULL, *bind = NULL, *fresh = NULL, *shape, *bshape;
    int j, rc = -1;

    if (shapes == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    args = PyTuple_New(m);
    if (args == NULL)
        goto done;
    for (j = 0; j < m; j++) {
        Py_INCREF(data[j]);
        PyTuple_SET_ITEM(args, j, (PyObject *)data[j]);
    }
    bind = PyObject_GetAttrString(spec, m == 1 ? "bind_one" : "bind");
    fresh = bind == NULL ? NULL : PyObject_Call(bind, args, NULL);
    if (fresh == NULL)
        goto done;
    for (j = 0; j < m; j++) {
        int r;
        shape = PyObject_GetAttrString((PyObject *)data[j], "shape");
        bshape = shape == NULL ? NULL : PyObject_CallMethod(spec, "batch_shape", "(O)", shape);
        Py_XDECREF(shape);
        if (bshape == NULL)
            goto done;
        r = mb_read_shape(bshape, shapes + j * NPY_MAXDIMS, PyArray_NDIM(data[j]));
        Py_DECREF(bshape);
        if (r)
            goto done;
    }
    Py_XSETREF(*bound, fresh);
    fresh = NULL;
    for (j = 0; j < m; j++) {
        int nd = PyArray_NDIM(data[j]);
        Py_INCREF(data[j]);
        Py_XSETREF(in[j].data, (PyObject *)data[j]);
        in[j].nd = nd;
        memcpy(in[j].dims, PyArray_DIMS(data[j]), nd * sizeof(npy_intp));
        memcpy(in[j].strides, PyArray_STRIDES(data[j]), nd * sizeof(npy_intp));
        memcpy(in[j].batch, shapes + j * NPY_MAXDIMS, nd * sizeof(npy_intp));
    }
    rc = 0;
done:
    Py_XDECREF(fresh);
    Py_XDECREF(bind);
    Py_XDECREF(args);
    PyMem_Free(shapes);
    return rc;
}

/* 1 when data is the array in was bound to, with the same shape and strides. */
static int mb_same(const mb_input *in, PyArrayObject *data)
{
    int nd = PyArray_NDIM(data);
    return (PyObject *)data == in->data && nd == in->nd
        && !memcmp(PyArray_DIMS(data), in->dims, nd * sizeof(npy_intp))
        && !memcmp(PyArray_STRIDES(data), in->strides, nd * sizeof(npy_intp));
}

/* 1 when the kernel may draw batch j into b: C-contiguous, writeable, and of
 * the batch's dtype and shape. */
static int mb_fits(const mb_input *in, PyArrayObject *data, PyArrayObject *b)
{
    return b != NULL && PyArray_NDIM(b) == in->nd && PyArray_TYPE(b) == PyArray_TYPE(data)
        && PyArray_IS_C_CONTIGUOUS(b) && PyArray_ISWRITEABLE(b)
        && !memcmp(PyArray_DIMS(b), in->batch, in->nd * sizeof(npy_intp));
}

/* The node's work: batch `state` of every input into *batches[j] and
 * state + 1 into *next.  0, or -1 with an exception. */
static int mb_minibatch_draw(PyObject *spec, PyObject **bound, mb_input *in, int m,
                             PyArrayObject *state, PyArrayObject **data,
                             PyArrayObject ***batches, PyArrayObject **next)
{
    npy_int64 step = *(npy_int64 *)PyArray_DATA(state);
    PyObject *outs, *res, *args[2];
    int j, stale = *bound == NULL;

    if (step < 0 || step == NPY_MAX_INT64) {
        /* BatchSpec.check_graph_step raises the error that says why. */
        res = PyObject_CallMethod(spec, "check_graph_step", "L", (long long)step);
        if (res != NULL) {
            Py_DECREF(res);
            PyErr_Format(PyExc_SystemError, "BatchSpec.check_graph_step accepted step %lld",
                         (long long)step);
        }
        return -1;
    }
    for (j = 0; j < m && !stale; j++)
        stale = !mb_same(&in[j], data[j]);
    if (stale && mb_bind(spec, bound, in, m, data))
        return -1;

    args[0] = PyLong_FromLongLong(step);
    if (args[0] == NULL)
        return -1;
    if (m == 1) {
        args[1] = mb_fits(&in[0], data[0], *batches[0]) ? (PyObject *)*batches[0] : Py_None;
        res = PyObject_Vectorcall(*bound, args, 2, NULL);
        Py_DECREF(args[0]);
        if (res == NULL)
            return -1;
        if (!PyArray_Check(res)) {
            PyErr_Format(PyExc_RuntimeError, "the bound draw returned %R, not an array", res);
            Py_DECREF(res);
            return -1;
        }
        Py_XSETREF(*batches[0], (PyArrayObject *)res);
    }
    else {
        outs = PyList_New(m);
        if (outs == NULL) {
            Py_DECREF(args[0]);
            return -1;
        }
        for (j = 0; j < m; j++) {
            PyObject *o = mb_fits(&in[j], data[j], *batches[j]) ? (PyObject *)*batches[j]
                                                                : Py_None;
            Py_INCREF(o);
            PyList_SET_ITEM(outs, j, o);
        }
        args[1] = outs;
        res = PyObject_Vectorcall(*bound, args, 2, NULL);
        Py_DECREF(args[0]);
        Py_DECREF(outs);
        if (res == NULL)
            return -1;
        if (!PyTuple_Check(res) || PyTuple_GET_SIZE(res) != m) {
            PyErr_Format(PyExc_RuntimeError,
                         "the bound draw returned %R, not a tuple of %d batches", res, m);
            Py_DECREF(res);
            return -1;
        }
        for (j = 0; j < m; j++) {
            PyObject *b = PyTuple_GET_ITEM(res, j);
            Py_INCREF(b);
            Py_XSETREF(*batches[j], (PyArrayObject *)b);
        }
        Py_DECREF(res);
    }

    Py_XSETREF(*next, (PyArrayObject *)PyArray_SimpleNew(0, NULL, NPY_INT64));
    if (*next == NULL)
        return -1;
    *(npy_int64 *)PyArray_DATA(*next) = step + 1;
    return 0;
}
