"""The Numba implementation of ``MinibatchDraw``: a registered
``numba.objmode`` call of the core's draw (no object-mode fallback warning)."""
import numpy as np

from ._op import MinibatchDraw
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


_register_numba()
