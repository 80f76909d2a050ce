"""Epochs, shards and resumable state in PyTensor graphs: the batches equal
the core's in the same mode, step for step, on the C, Python and Numba
backends (JAX in a fresh interpreter); states move between the core and the
adapter; PyMC fits in epoch mode with the whole data's total_size."""
import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pymc as pm
import pytensor
import pytest

import twins
from mbcore import Minibatch as CoreMinibatch
from mbcore import minibatches
from mbcore.adapters.pytensor import (Minibatch, epoch, load_state_dict, minibatch_step,
                                      state_dict, total_size)

MODES = [pytest.param("FAST_RUN", id="c"),
         pytest.param(pytensor.compile.mode.Mode(linker="py", optimizer="fast_run"), id="py"),
         pytest.param("NUMBA", id="numba")]

# (epochs, epoch_end, shard) of the core's modes that keep a batch's shape.
SAMPLING = [
    pytest.param(dict(epochs=True), id="wrap"),
    pytest.param(dict(epochs=True, epoch_end="drop"), id="drop"),
    pytest.param(dict(shard=(1, 4)), id="shard"),
    pytest.param(dict(epochs=True, shard=(2, 4)), id="wrap-shard"),
    pytest.param(dict(epochs=True, epoch_end="drop", shard=(0, 2)), id="drop-shard"),
]


def compile_fn(outputs, mode):
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*object mode.*")
        return pytensor.function([], outputs, mode=mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kw", SAMPLING)
@pytest.mark.parametrize("batch_size", [8, [8, None], [(8, 3), 2]], ids=repr)
def test_batches_equal_the_core_in_every_mode(mode, kw, batch_size):
    data = np.arange(30 * 5 * 2, dtype=np.float64).reshape(30, 5, 2)
    xb = Minibatch(data, batch_size=batch_size, random_seed=7, **kw)
    f = compile_fn(xb, mode)
    core = CoreMinibatch(data, batch_size, random_seed=7, **kw)
    # 12 steps cross several epoch ends (30 rows, 8 a batch).
    for t in range(12):
        twins.assert_same_array(f(), next(core))
    assert minibatch_step(xb).get_value() == 12
    assert xb.type.shape[0] == core.shape[0]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kw", SAMPLING)
def test_aligned_variables_equal_minibatches(mode, kw, xy):
    X, y = xy
    X, y = X[:100], y[:100]
    xb, yb = Minibatch(X, y, batch_size=16, random_seed=3, **kw)
    f = compile_fn([xb, yb], mode)
    ref = minibatches(X, y, batch_size=16, random_seed=3, **kw)
    for t in range(9):
        a, b = f()
        r = next(ref)
        twins.assert_same_array(a, r[0])
        twins.assert_same_array(b, r[1])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("epoch_end,n,b", [("wrap", 40, 8), ("wrap", 37, 5), ("drop", 37, 5)])
def test_every_row_once_an_epoch(mode, epoch_end, n, b):
    # Rows are their own index: a batch's values tell the rows it took.
    data = np.arange(n, dtype=np.int64)
    xb = Minibatch(data, batch_size=b, random_seed=11, epochs=True, epoch_end=epoch_end)
    f = compile_fn(xb, mode)
    per_epoch = n // b if epoch_end == "drop" else None
    if epoch_end == "wrap":
        # Concatenated, the stream is the epochs' permutations back to back.
        stream = np.concatenate([f() for _ in range(2 * n // np.gcd(n, b))])
        for e in range(len(stream) // n):
            assert sorted(stream[e * n:(e + 1) * n]) == list(range(n)), e
    else:
        for e in range(3):
            assert epoch(xb) == e
            rows = np.concatenate([f() for _ in range(per_epoch)])
            assert len(set(rows.tolist())) == per_epoch * b    # no row twice an epoch
        assert epoch(xb) == 3
    # The epochs differ (a fresh permutation each).
    g = compile_fn(xb, mode)
    minibatch_step(xb).set_value(0)
    first = g()
    minibatch_step(xb).set_value(n if epoch_end == "wrap" else per_epoch)
    assert not np.array_equal(first, g())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("epochs", [False, True])
def test_shards_of_every_world_union_to_the_global_batch(mode, epochs):
    X = np.arange(60.0 * 2).reshape(60, 2)
    glob = Minibatch(X, batch_size=12, random_seed=4, epochs=epochs)
    g = compile_fn(glob, mode)
    want = [g() for _ in range(7)]
    for world in (1, 2, 3, 4, 6, 12):
        fs = [compile_fn(Minibatch(X, batch_size=12, random_seed=4, epochs=epochs,
                                   shard=(r, world)), mode) for r in range(world)]
        for t in range(7):
            parts = [f() for f in fs]
            assert all(p.shape == (12 // world, 2) for p in parts)
            twins.assert_same_array(np.concatenate(parts), want[t])


def test_state_round_trip_between_the_core_and_the_adapter(xy):
    X, y = xy
    kw = dict(batch_size=32, random_seed=9, epochs=True, epoch_end="drop")
    xb, yb = Minibatch(X, y, **kw)
    f = pytensor.function([], [xb, yb])
    for _ in range(5):
        f()
    state = json.loads(json.dumps(state_dict(yb)))
    assert state["step"] == 5 and state["format"] == "mbcore.Minibatches"
    # The adapter's state resumes the core's group, and the core's its own.
    core = minibatches(X, y, **kw)
    core.load_state_dict(state)
    assert core.state_dict() == state
    for _ in range(3):
        a, b = f()
        r = next(core)
        twins.assert_same_array(a, r[0])
        twins.assert_same_array(b, r[1])
    # And back: the core's state moves a fresh adapter stream.
    core.seek(100)
    xb2, yb2 = Minibatch(X, y, **kw)
    load_state_dict(xb2, core.state_dict())
    assert minibatch_step(xb2).get_value() == 100 and state_dict(xb2) == core.state_dict()
    a, b = pytensor.function([], [xb2, yb2])()
    r = core.draw(100)
    twins.assert_same_array(a, r[0])
    twins.assert_same_array(b, r[1])
    assert epoch(xb2) == core.epoch == 101 // (len(y) // 32)


def test_state_of_one_variable_is_the_core_minibatch_state():
    data = np.arange(50.0)
    xb = Minibatch(data, batch_size=5, random_seed=2, shard=(1, 5))
    core = CoreMinibatch(data, 5, random_seed=2, shard=(1, 5))
    core.seek(7)
    minibatch_step(xb).set_value(7)
    assert state_dict(xb) == core.state_dict()
    # A state saved by another worker, or on another world size, loads.
    other = CoreMinibatch(data, 5, random_seed=2, shard=(0, 1))
    other.seek(3)
    load_state_dict(xb, other.state_dict())
    assert minibatch_step(xb).get_value() == 3
    twins.assert_same_array(pytensor.function([], xb)(), core.draw(3))


@pytest.mark.parametrize("change,field", [
    (dict(random_seed=3), "seed"), (dict(batch_size=6), "axes"), (dict(epochs=False, replace=False), "epochs"),
    (dict(epoch_end="drop"), "epoch_end"), (dict(n=60), "arrays")])
def test_state_of_another_stream_is_refused_and_nothing_changes(change, field):
    kw = dict(batch_size=5, random_seed=2, epochs=True, epoch_end="wrap")
    change = dict(change)
    n = change.pop("n", 50)
    kw.update(change)
    other = CoreMinibatch(np.zeros(n), **kw)
    other.seek(4)
    xb = Minibatch(np.zeros(50), batch_size=5, random_seed=2, epochs=True)
    minibatch_step(xb).set_value(9)
    with pytest.raises(ValueError, match=field):
        load_state_dict(xb, other.state_dict())
    assert minibatch_step(xb).get_value() == 9
    with pytest.raises(ValueError, match="version"):
        load_state_dict(xb, dict(state_dict(xb), version=99))
    with pytest.raises(ValueError, match="not of .mbcore.Minibatch."):
        load_state_dict(xb, dict(state_dict(xb), format="mbcore.Minibatches"))
    with pytest.raises(TypeError, match="dict"):
        load_state_dict(xb, [1])
    with pytest.raises(ValueError, match="not a batch"):
        state_dict(pytensor.shared(np.zeros(3)) + 1)


def test_state_and_epoch_follow_shared_data_with_a_new_length():
    Xs = pytensor.shared(np.arange(40.0))
    xb = Minibatch(Xs, batch_size=8, random_seed=1, epochs=True)
    f = pytensor.function([], xb)
    for _ in range(6):
        f()
    assert epoch(xb) == 6 * 8 // 40
    Xs.set_value(np.arange(100.0))
    assert state_dict(xb)["arrays"] == [{"shape": [100]}]
    assert epoch(xb) == 6 * 8 // 100
    twins.assert_same_array(f(), CoreMinibatch(np.arange(100.0), 8, random_seed=1,
                                               epochs=True).draw(6))


def test_bad_mode_arguments():
    X = np.zeros((30, 2))
    with pytest.raises(ValueError, match="epoch_end='short'"):
        Minibatch(X, batch_size=8, epochs=True, epoch_end="short")
    with pytest.raises(ValueError, match="epoch_end"):
        Minibatch(X, batch_size=8, epochs=True, epoch_end="cut")
    with pytest.raises(ValueError, match="needs epochs=True"):
        Minibatch(X, batch_size=8, epoch_end="drop")
    with pytest.raises(TypeError, match="epochs must be a bool"):
        Minibatch(X, batch_size=8, epochs=1)
    with pytest.raises(ValueError, match="must divide the batch size 8"):
        Minibatch(X, batch_size=8, shard=(0, 3))
    with pytest.raises(ValueError, match="0 <= rank < world"):
        Minibatch(X, batch_size=8, shard=(4, 4))
    with pytest.raises(TypeError, match="shard must be a"):
        Minibatch(X, batch_size=8, shard=2)
    with pytest.raises(ValueError, match=r"batch_size must be <= 30 .*epoch_end='drop'"):
        Minibatch(X, batch_size=40, epochs=True, epoch_end="drop")
    # wrap lets a batch span epochs
    xb = Minibatch(X[:, 0], batch_size=40, epochs=True)
    twins.assert_same_array(pytensor.function([], xb)(),
                            CoreMinibatch(X[:, 0], 40, epochs=True).draw(0))


@pytest.mark.parametrize("mode", MODES)
def test_gradient_in_epoch_and_shard_mode(mode):
    X = np.arange(24.0 * 2).reshape(24, 2)
    Xs = pytensor.shared(X)
    xb = Minibatch(Xs, batch_size=6, random_seed=8, epochs=True, shard=(1, 2))
    grad = pytensor.grad((xb ** 2).sum(), Xs)
    f = pytensor.function([], [xb, grad], mode=mode)
    core = CoreMinibatch(X, 6, random_seed=8, epochs=True, shard=(1, 2))
    for t in range(5):
        batch, g = f()
        (idx,) = [i for i in core.indices(t) if i is not None]
        expect = np.zeros_like(X)
        np.add.at(expect, idx, 2 * X[idx])
        twins.assert_same_array(batch, core.draw(t))
        np.testing.assert_allclose(g, expect)


def regression(xb, yb, **obs):
    with pm.Model() as model:
        w = pm.Normal("w", 0.0, 10.0, shape=2)
        b = pm.Normal("b", 0.0, 10.0)
        pm.Normal("obs", xb @ w + b, 0.1, observed=yb, **obs)
    return model


def test_fit_in_epoch_mode_sees_the_core_batches_and_recovers_the_truth(xy):
    X, y = xy
    xb, yb = Minibatch(X, y, batch_size=100, random_seed=1, epochs=True, epoch_end="drop")
    model = regression(xb, yb, total_size=total_size(yb))
    assert total_size(yb) == len(y)
    with model:
        approx = pm.fit(1500, method="advi", random_seed=0, progressbar=False,
                        obj_optimizer=pm.adam(learning_rate=0.05))
    est = approx.sample(300, random_seed=0).posterior
    np.testing.assert_allclose(est["w"].mean(("chain", "draw")), [1.5, -2.0], atol=0.05)
    steps = int(minibatch_step(xb).get_value())
    assert steps >= 1500 and epoch(xb) == steps // 20
    # The logp of the model at step t is that of the core's batch t.
    logp = model.compile_fn(model.logp(vars=model.observed_RVs))
    ref = minibatches(X, y, batch_size=100, random_seed=1, epochs=True, epoch_end="drop")
    point = {"w": np.array([1.0, -1.0]), "b": np.array(0.3)}
    minibatch_step(xb).set_value(37)
    for t in (37, 38):
        bx, by = ref.draw(t)
        mu = bx @ point["w"] + point["b"]
        ll = -0.5 * np.sum(((by - mu) / 0.1) ** 2) - len(by) * (np.log(0.1)
                                                                + 0.5 * np.log(2 * np.pi))
        np.testing.assert_allclose(logp(point), ll * len(y) / 100, rtol=1e-10)


def test_shard_total_size_is_the_whole_data(xy):
    X, y = xy
    xb, yb = Minibatch(X, y, batch_size=100, random_seed=1, shard=(3, 4))
    assert total_size(yb) == len(y) == CoreMinibatch(y, 100, shard=(3, 4)).total_size
    model = regression(xb, yb, total_size=total_size(yb))
    logp = model.compile_fn(model.logp(vars=model.observed_RVs))
    point = {"w": np.array([1.0, -1.0]), "b": np.array(0.3)}
    bx, by = minibatches(X, y, batch_size=100, random_seed=1, shard=(3, 4)).draw(0)
    assert len(by) == 25
    mu = bx @ point["w"] + point["b"]
    ll = -0.5 * np.sum(((by - mu) / 0.1) ** 2) - 25 * (np.log(0.1) + 0.5 * np.log(2 * np.pi))
    # The shard's 25 rows scaled to the whole data set.
    np.testing.assert_allclose(logp(point), ll * len(y) / 25, rtol=1e-10)


JAX_SCRIPT = textwrap.dedent("""
    import numpy as np, pytensor
    from mbcore import minibatches
    from mbcore.adapters.pytensor import Minibatch
    X = np.arange(300.0).reshape(100, 3); y = np.arange(100.0)
    ys = pytensor.shared(y)
    for kw in (dict(epochs=True), dict(epochs=True, epoch_end="drop", shard=(1, 3)),
               dict(shard=(2, 3))):
        xb, yb = Minibatch(X, ys, batch_size=[(9, 3)], random_seed=5, **kw)
        f = pytensor.function([], [xb, yb], mode="JAX")
        ref = minibatches(X, y, batch_size=[(9, 3)], random_seed=5, **kw)
        for t in range(14):
            a, b = f()
            r = ref.draw(t)
            assert np.array_equal(np.asarray(a), r[0]), (kw, t)
            assert np.array_equal(np.asarray(b), r[1]), (kw, t)
    print("JAX OK")
""")


def test_jax_modes_equal_the_core():
    pytest.importorskip("jax")
    proc = subprocess.run([sys.executable, "-P", "-c", JAX_SCRIPT], capture_output=True,
                          text=True, env=dict(os.environ), timeout=300)
    assert proc.returncode == 0 and "JAX OK" in proc.stdout, proc.stderr[-3000:]
