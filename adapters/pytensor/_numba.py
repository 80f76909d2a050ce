"""The Numba implementations of ``MinibatchDraw`` and ``MinibatchIndices``.

``MinibatchDraw`` of one or two data arrays draws in nopython code: it calls
the kernel's ``draw_gather`` C function (``mbcore.native``) on the plans of the
Samplers that ``spec.bind`` built for the arrays, which is what the core's
draw runs for each array, so the batches are the core's.  The plans'
addresses, with the data pointer, shape and strides each plan was built
for, are kept in a record, an int64 array the nopython code reads by
address; a call whose data match the record draws there, with no Python
frame.  Any other call (new data, a step out of range, a
mode whose draw is not ``draw_gather`` alone, three or more arrays) enters
``numba.objmode`` and draws through ``spec.bind`` of the data as the Python
backends do, then records the Samplers it bound for the next call.

At batch 128 of a (1e6,) float64 vector a compiled function's call took
2.74 us in nopython against 3.75 us through ``objmode`` (entering object
mode and boxing the batch), pm.Minibatch's 18.2 us, each the best of 15
interleaved measurements in one process on a 2-vCPU AMD EPYC (Zen 5) VM
under a load average of 7-8; a Numba-mode function that returns a shared
vector times 2 and updates a shared scalar took about 2.1 us there, the
floor of such a call.  The kernel runs with the GIL held, as nopython code
compiled without ``nogil`` does.

``MinibatchIndices`` (the gradient's indices) and ``SourceDraw`` (data
read through a Source, gathered in Python) are registered ``objmode`` calls
of their ``perform``.  None warns of an object-mode fallback.
"""
import pickle

import numpy as np

from mbcore import native
from ._op import MinibatchDraw, MinibatchIndices
from ._source_op import SourceDraw
from ._step import LAST_STEP, next_step

# The record: [1 when it holds the Samplers of the data last seen and every
# one is drawn by draw_gather alone, else 0; the address of the kernel's
# thread limit], then for each array: [data pointer, plan address, scratch
# int64 entries, shape (ndim), strides (ndim), batch shape (ndim)].
_HEAD = 2
_FIELDS = 3


def _record_layout(ndims):
    """Offsets of each array's entries in the record, and its length."""
    offsets, at = [], _HEAD
    for nd in ndims:
        offsets.append(at)
        at += _FIELDS + 3 * nd
    return offsets, at


def _fill_record(rec, offsets, ndims, bound):
    """Record the Samplers behind ``bound`` (``spec.bind``'s callable), or
    mark the record unusable (rec[0] = 0) when its draw is not draw_gather
    of each Sampler's plan."""
    rec[0] = 0
    found = native.plans(bound)
    if found is None or len(found) != len(offsets):
        return
    for (s, plan, scratch, threads), o, nd in zip(found, offsets, ndims):
        d = s.data
        if d.ndim != nd:
            return
        rec[1] = threads
        rec[o:o + _FIELDS] = (d.ctypes.data, plan, scratch)
        rec[o + _FIELDS:o + _FIELDS + nd] = d.shape
        rec[o + _FIELDS + nd:o + _FIELDS + 2 * nd] = d.strides
        rec[o + _FIELDS + 2 * nd:o + _FIELDS + 3 * nd] = s.shape
    rec[0] = 1


class _Binding:
    """What a compiled draw keeps between calls: the ids of the data arrays
    it last saw, ``spec.bind`` of them, and the record of their Samplers'
    plans, whose address the nopython code holds.  It belongs to this
    process: pickling it raises ``PicklingError``, which tells Numba to keep
    the objmode call it compiles (again for each new input layout) in
    process, rather than serialise the draw with Samplers that cannot be."""

    __slots__ = ("ids", "draw", "rec")

    def __init__(self, rec):
        self.ids = self.draw = None
        self.rec = rec

    def __reduce__(self):
        raise pickle.PicklingError("a compiled minibatch draw's bound data stay in its process")


def _register_numba():
    try:
        import numba
        from numba import types
        from numba.core import cgutils
        from numba.extending import intrinsic
        from numba.np.unsafe.ndarray import to_fixed_tuple
        from pytensor.link.numba.dispatch.basic import (numba_funcify, numba_njit,
                                                        get_numba_type)
    except ImportError:       # pragma: no cover - numba comes with pytensor
        return

    from llvmlite import ir

    DRAW_GATHER = native.DRAW_GATHER

    @intrinsic
    def as_ptr(typingctx, addr):
        """An integer address as a void pointer."""
        if not isinstance(addr, types.Integer):
            return None

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], cgutils.voidptr_t)
        return types.voidptr(addr), codegen

    @intrinsic
    def call_draw_gather(typingctx, plan, src, dst, step, scratch, nthreads):
        """``draw_gather(plan, src, dst, step, scratch, nthreads)``, the
        pointers given as integer addresses: an indirect call of the kernel's
        C function (a constant address; no ctypes object, which Numba's
        objmode could not serialise)."""
        args = (plan, src, dst, step, scratch, nthreads)
        if not all(isinstance(a, types.Integer) for a in args):
            return None

        def codegen(context, builder, signature, llargs):
            i64, vp = ir.IntType(64), cgutils.voidptr_t
            fnty = ir.FunctionType(ir.IntType(32), [vp, vp, vp, i64, vp, ir.IntType(32)])
            v = [context.cast(builder, a, t, types.int64)
                 for a, t in zip(llargs, signature.args)]
            fn = builder.inttoptr(ir.Constant(i64, DRAW_GATHER), fnty.as_pointer())
            return builder.call(fn, [builder.inttoptr(v[0], vp), builder.inttoptr(v[1], vp),
                                     builder.inttoptr(v[2], vp), v[3],
                                     builder.inttoptr(v[4], vp), builder.trunc(v[5], ir.IntType(32))])
        return types.int32(*args), codegen

    @numba_njit
    def bound_to(rec, o, d):
        """d is the array whose plan the record holds at offset o: the same
        data pointer, shape and strides."""
        if np.int64(d.ctypes.data) != rec[o]:
            return False
        nd = d.ndim
        for k in range(nd):
            if d.shape[k] != rec[o + 3 + k] or d.strides[k] != rec[o + 3 + nd + k]:
                return False
        return True

    @numba_njit
    def gather(rec, o, d, b, t):
        """Batch t of the plan at offset o, from d into b (as Sampler.draw:
        a batch of no bytes draws nothing)."""
        if b.size == 0:
            return 0
        nthreads = numba.carray(as_ptr(rec[1]), (1,), np.intc)[0]
        n = rec[o + 2]
        if n == 0:
            call_draw_gather(rec[o + 1], d.ctypes.data, b.ctypes.data, t, 0, nthreads)
            return 0
        scratch = np.empty(n, np.int64)
        call_draw_gather(rec[o + 1], d.ctypes.data, b.ctypes.data, t, scratch.ctypes.data,
                         nthreads)
        return scratch.size      # scratch lives until the kernel is done with it

    @numba_funcify.register(MinibatchDraw)
    def numba_funcify_MinibatchDraw(op, node, **kwargs):
        # Batches are C-contiguous: saying so lets Numba pick contiguous loops
        # (np.dot) downstream.
        bind = op.spec.bind
        n_data = len(node.outputs) - 1
        batch_types = [get_numba_type(o.type, layout="C") for o in node.outputs[:-1]]
        batch_sig = batch_types[0] if n_data == 1 else numba.types.Tuple(batch_types)
        ndims = [v.type.ndim for v in node.inputs[:-1]]
        offsets, size = _record_layout(ndims)
        state = _Binding(np.zeros(size, dtype=np.int64))
        rec = state.rec

        def py_draw(t, *data):
            t = next_step(t)
            # Numba hands its Python callers' arrays back as the same objects;
            # the bound Samplers keep references to them, so while bound an
            # id seen here is never another array's.
            ids = tuple(map(id, data))
            if ids != state.ids:
                new = bind(*data)
                _fill_record(rec, offsets, ndims, new)   # before the old Samplers go
                state.draw = new
                state.ids = ids
            res = state.draw(t)
            return res[0] if n_data == 1 else res

        # The record's address and layout are constants of the compiled code;
        # py_draw (a constant too) keeps the record alive.
        REC, REC_N = rec.ctypes.data, size
        LAST = LAST_STEP

        if n_data == 1:
            O0, N0 = offsets[0], ndims[0]
            S0 = O0 + 3 + 2 * N0
            T0 = np.dtype(node.outputs[0].type.dtype)

            @numba_njit
            def minibatch_draw(d0, step):
                t = step[()]
                r = numba.carray(as_ptr(REC), (REC_N,), np.int64)
                if t >= 0 and t < LAST and r[0] == 1 and bound_to(r, O0, d0):
                    b = np.empty(to_fixed_tuple(r[S0:S0 + N0], N0), dtype=T0)
                    gather(r, O0, d0, b, t)
                else:
                    with numba.objmode(b=batch_sig):
                        b = py_draw(t, d0)
                nxt = np.empty((), dtype=np.int64)
                nxt[()] = t + 1
                return b, nxt
        elif n_data == 2:
            (O0, O1), (N0, N1) = offsets, ndims
            S0, S1 = O0 + 3 + 2 * N0, O1 + 3 + 2 * N1
            T0, T1 = (np.dtype(o.type.dtype) for o in node.outputs[:2])

            @numba_njit
            def minibatch_draw(d0, d1, step):
                t = step[()]
                r = numba.carray(as_ptr(REC), (REC_N,), np.int64)
                if (t >= 0 and t < LAST and r[0] == 1 and bound_to(r, O0, d0)
                        and bound_to(r, O1, d1)):
                    b0 = np.empty(to_fixed_tuple(r[S0:S0 + N0], N0), dtype=T0)
                    b1 = np.empty(to_fixed_tuple(r[S1:S1 + N1], N1), dtype=T1)
                    gather(r, O0, d0, b0, t)
                    gather(r, O1, d1, b1, t)
                else:
                    with numba.objmode(b=batch_sig):
                        b = py_draw(t, d0, d1)
                    b0, b1 = b
                nxt = np.empty((), dtype=np.int64)
                nxt[()] = t + 1
                return b0, b1, nxt
        else:
            ret_sig = numba.types.Tuple([get_numba_type(o.type, layout="C")
                                         for o in node.outputs])

            def py_draw_all(inputs):
                *data, step = inputs
                t = int(step)
                return (*py_draw(t, *data), np.array(t + 1, dtype=np.int64))

            @numba_njit
            def minibatch_draw(*inputs):
                with numba.objmode(ret=ret_sig):
                    ret = py_draw_all(inputs)
                return ret
        return minibatch_draw

    @numba_funcify.register(MinibatchIndices)
    def numba_funcify_MinibatchIndices(op, node, **kwargs):
        types_ = [get_numba_type(o.type, layout="C") for o in node.outputs]
        ret_sig = types_[0] if len(types_) == 1 else numba.types.Tuple(types_)
        perform = op.perform
        n_out = len(node.outputs)

        def py_indices(shape, step):
            storage = [[None] for _ in range(n_out)]
            perform(node, [shape, step], storage)
            return storage[0][0] if n_out == 1 else tuple(s[0] for s in storage)

        @numba_njit
        def minibatch_indices(shape, step):
            with numba.objmode(ret=ret_sig):
                ret = py_indices(shape, step)
            return ret
        return minibatch_indices

    @numba_funcify.register(SourceDraw)
    def numba_funcify_SourceDraw(op, node, **kwargs):
        ret_sig = numba.types.Tuple([get_numba_type(o.type, layout="C")
                                     for o in node.outputs])
        perform = op.perform
        n_out = len(node.outputs)

        def py_draw_all(inputs):
            storage = [[None] for _ in range(n_out)]
            perform(node, list(inputs), storage)
            return tuple(s[0] for s in storage)

        @numba_njit
        def source_draw(*inputs):
            with numba.objmode(ret=ret_sig):
                ret = py_draw_all(inputs)
            return ret
        return source_draw


_register_numba()
