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
        draw = op.spec.draw
        n_out = len(node.outputs)

        def py_draw(inputs):
            *data, step = inputs
            t = next_step(step)
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
