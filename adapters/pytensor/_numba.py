"""The Numba implementations of ``MinibatchDraw`` and ``MinibatchIndices``:
registered ``numba.objmode`` calls of the core (no object-mode fallback
warning)."""
import numpy as np

from ._op import MinibatchDraw, MinibatchIndices
from ._step import next_step


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
        bind = op.spec.bind
        n_data = len(node.outputs) - 1
        batch_sig = (get_numba_type(node.outputs[0].type, layout="C") if n_data == 1 else
                     numba.types.Tuple([get_numba_type(o.type, layout="C")
                                        for o in node.outputs[:-1]]))
        bound = [None, None]     # the data arrays' ids, and spec.bind of them

        def py_draw(t, *data):
            t = next_step(t)
            # Numba hands its Python callers' arrays back as the same objects;
            # the bound Samplers keep references to them, so while bound an
            # id seen here is never another array's.
            ids = tuple(map(id, data))
            if ids != bound[0]:
                bound[1] = bind(*data)
                bound[0] = ids
            res = bound[1](t)
            return res[0] if n_data == 1 else res

        # The step crosses into Python as an int and its successor is made
        # here: only the batches are boxed and unboxed.
        if n_data == 1:
            @numba_njit
            def minibatch_draw(d0, step):
                t = step[()]
                with numba.objmode(b=batch_sig):
                    b = py_draw(t, d0)
                nxt = np.empty((), dtype=np.int64)
                nxt[()] = t + 1
                return b, nxt
        elif n_data == 2:
            @numba_njit
            def minibatch_draw(d0, d1, step):
                t = step[()]
                with numba.objmode(b=batch_sig):
                    b = py_draw(t, d0, d1)
                nxt = np.empty((), dtype=np.int64)
                nxt[()] = t + 1
                return b[0], b[1], nxt
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
        types = [get_numba_type(o.type, layout="C") for o in node.outputs]
        ret_sig = types[0] if len(types) == 1 else numba.types.Tuple(types)
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


_register_numba()
