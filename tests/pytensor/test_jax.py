"""The JAX backend: a host callback into the core draws the core's batches.

Each check runs in a fresh interpreter, so that a process that used JAX host
callbacks is also seen to exit cleanly (see ``_jax_drain_at_exit``).
"""
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("jax")

SCRIPT = textwrap.dedent("""
    import numpy as np, pytensor
    from mbcore import minibatches, Minibatch as CoreMinibatch
    from mbcore.adapters.pytensor import Minibatch, minibatch_step

    X = np.arange(300.0).reshape(100, 3); y = np.arange(100.0)
    # Constant data (stays on the host) and shared data (sent by the callback).
    ys = pytensor.shared(y)
    for yv in (y, ys):
        xb, yb = Minibatch(X, yv, batch_size=[(7, 3)], random_seed=5)
        f = pytensor.function([], [xb, yb], mode="JAX")
        ref = minibatches(X, y, batch_size=[(7, 3)], random_seed=5)
        for t in range(4):
            a, b = f()
            r = ref.draw(t)
            assert np.array_equal(np.asarray(a), r[0]) and np.array_equal(np.asarray(b), r[1]), t
        assert minibatch_step(xb).get_value() == 4
    # A new length on the shared data.
    new = np.arange(1000.0)
    ys.set_value(new)
    zb = Minibatch(ys, batch_size=10, random_seed=2, replace=False)
    g = pytensor.function([], zb, mode="JAX")
    for t in range(3):
        assert np.array_equal(np.asarray(g()), CoreMinibatch(new, 10, random_seed=2,
                                                              replace=False).draw(t))
    # The gradient with respect to the data.
    Xs = pytensor.shared(X)
    xg = Minibatch(Xs, batch_size=6, random_seed=8)
    grad = pytensor.grad((xg ** 2).sum(), Xs)
    h = pytensor.function([], [xg, grad], mode="JAX")
    for t in range(2):
        batch, g = (np.asarray(v) for v in h())
        idx = CoreMinibatch(X, 6, random_seed=8).indices(t)[0]
        expect = np.zeros_like(X)
        np.add.at(expect, idx, 2 * X[idx])
        assert np.array_equal(batch, X[idx]) and np.allclose(g, expect), t
    print("JAX OK")
""")


def test_jax_batches_equal_the_core_and_the_process_exits_cleanly():
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-P", "-c", SCRIPT], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0 and "JAX OK" in proc.stdout, proc.stderr[-3000:]
