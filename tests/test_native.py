"""mbcore.native: the C entry point a compiled caller runs gives the core's
batches, and modes it does not cover alone are reported as such."""
import ctypes

import numpy as np
import pytest

from mbcore import BatchSpec, native

DRAW = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                        ctypes.c_uint64, ctypes.c_void_p, ctypes.c_int)(native.DRAW_GATHER)


def draw_natively(bound, step):
    """Each array's batch ``step`` through draw_gather, as compiled code would."""
    outs = []
    for s, plan, scratch, threads in native.plans(bound):
        out = np.empty(s.shape, s.data.dtype)
        buf = np.empty(max(scratch, 1), np.int64)
        nthreads = ctypes.c_int.from_address(threads).value
        assert DRAW(plan, s.data.ctypes.data, out.ctypes.data, step, buf.ctypes.data,
                    nthreads) == 0
        outs.append(out)
    return outs


@pytest.mark.parametrize("kw", [dict(batch_size=7), dict(batch_size=7, replace=False),
                                dict(batch_size=[3, 4]), dict(batch_size=5, epochs=True),
                                dict(batch_size=4, shard=(1, 2))])
def test_draw_gather_gives_the_core_batches(kw):
    X = np.arange(600.0).reshape(30, 20)
    y = np.arange(30, dtype=np.int32)
    spec = BatchSpec(random_seed=3, **kw)
    arrays = (X,) if isinstance(kw["batch_size"], list) else (X, y)
    bound = spec.bind(*arrays)
    assert native.plans(bound) is not None
    for step in (0, 1, 17, 2**40):
        want = spec.draw(step, *arrays)
        got = draw_natively(bound, step)
        for g, w in zip(got, want if isinstance(want, tuple) else (want,)):
            np.testing.assert_array_equal(g, w)


def test_short_epoch_batches_are_not_covered():
    spec = BatchSpec(batch_size=4, random_seed=0, epochs=True, epoch_end="short")
    assert native.plans(spec.bind(np.arange(10.0))) is None
    assert native.DRAW_GATHER != 0
