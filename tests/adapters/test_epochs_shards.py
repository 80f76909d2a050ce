"""Epochs and shards through the Theano adapter: a variable yields exactly
the core's batches for the same arguments, total_size stays the data's
length, and the gradient scatters to the rows each batch was drawn from."""
import numpy as np
import pytest

from mbcore.adapters.theano import Minibatch, MinibatchOp, minibatches  # first
import mbcore
import theano
import theano.tensor as tt

IMPLS = {"c": None, "py": theano.compile.mode.Mode(linker="py", optimizer="fast_run")}
MODES = [dict(epochs=True), dict(epochs=True, epoch_end="drop"), dict(shard=(1, 4)),
         dict(epochs=True, shard=(3, 4)), dict(epochs=True, epoch_end="drop", shard=(0, 2))]
IDS = ["wrap", "drop", "shard", "wrap-shard", "drop-shard"]


@pytest.mark.parametrize("impl", sorted(IMPLS))
@pytest.mark.parametrize("mode", MODES, ids=IDS)
def test_variable_equals_core(mode, impl):
    data = np.random.default_rng(1).standard_normal((50, 3))
    x = Minibatch(data, batch_size=16, random_seed=7, dtype="float64", **mode)
    core = mbcore.Minibatch(data, 16, random_seed=7, **mode)
    f = theano.function([], x, mode=IMPLS[impl])
    for t in range(9):                      # 50 rows, 16 a batch: past an epoch
        np.testing.assert_array_equal(f(), core.draw(t))
    assert x.total_size == 50
    assert x.epochs == mode.get("epochs", False)


@pytest.mark.parametrize("mode", MODES, ids=IDS)
def test_group_equals_core_and_gradient_scatters(mode):
    X = np.random.default_rng(2).standard_normal((40, 2))
    y = np.arange(40.0)
    xb, yb = minibatches(X, y, batch_size=8, random_seed=3, dtype="float64", **mode)
    core = mbcore.minibatches(X, y, batch_size=8, random_seed=3, **mode)
    g = theano.grad(xb.sum(), xb.shared)
    f = theano.function([], [xb, yb, g])
    for t in range(7):
        bx, by, gx = f()
        cx, cy = core.draw(t)
        np.testing.assert_array_equal(bx, cx)
        np.testing.assert_array_equal(by, cy)
        rows = core.members[0].indices(t)[0]
        np.testing.assert_array_equal(gx[:, 0], np.bincount(rows, minlength=40))


def test_shapes_and_errors():
    data = np.zeros((64, 2))
    x = Minibatch(data, batch_size=16, epochs=True, shard=(0, 4), dtype="float64")
    assert theano.function([], x.shape)().tolist() == [4, 2]
    assert str(x.owner.op) == "MinibatchOp{batch_size=16, epochs=wrap, shard=0/4}"
    assert isinstance(x.owner.op, MinibatchOp)
    with pytest.raises(ValueError, match=r"epoch_end='short' is not available for Theano "
                                         r"variables"):
        Minibatch(data, batch_size=16, epochs=True, epoch_end="short")
    with pytest.raises(ValueError, match=r"world size 3 must divide the batch size 16"):
        Minibatch(data, batch_size=16, shard=(0, 3))
    with pytest.raises(ValueError, match=r"batch_size must be <= 64 .* epoch_end='drop'"):
        Minibatch(data, batch_size=65, epochs=True, epoch_end="drop")
    x = Minibatch(data, batch_size=16, epochs=True, epoch_end="drop", dtype="float64")
    with pytest.raises(ValueError, match=r"batch_size must be <= 10 .* epoch_end='drop'"):
        x.set_value(np.zeros((10, 2)))


def test_state_round_trip_and_mismatch():
    import json
    X = np.random.default_rng(3).standard_normal((30, 2))
    y = np.arange(30.0)
    xb, yb = minibatches(X, y, batch_size=6, random_seed=4, dtype="float64", epochs=True)
    f = theano.function([], [xb, yb])
    for _ in range(4):
        f()
    state = json.loads(json.dumps(yb.state_dict()))
    assert state["step"] == 4 and state["format"] == "mbcore.Minibatches"
    assert [a["shape"] for a in state["arrays"]] == [[30, 2], [30]]
    want = [f() for _ in range(3)]
    xc, yc = minibatches(X, y, batch_size=6, random_seed=4, dtype="float64", epochs=True)
    yc.load_state_dict(state)
    g = theano.function([], [xc, yc])
    for w in want:
        for a, b in zip(g(), w):
            np.testing.assert_array_equal(a, b)
    # The core resumes from the same step with the same batches.
    core = mbcore.minibatches(X, y, batch_size=6, random_seed=4, epochs=True)
    core.seek(state["step"])
    np.testing.assert_array_equal(next(core)[1], want[0][1])
    other = Minibatch(y[:20], batch_size=6, random_seed=4, dtype="float64", epochs=True)
    with pytest.raises(ValueError, match=r"state is of 'mbcore.Minibatches', not of "
                                         r"'mbcore.Minibatch'"):
        other.load_state_dict(state)
    one = dict(state, format="mbcore.Minibatch", arrays=[{"shape": [30]}],
               axes=other.state_dict()["axes"])
    with pytest.raises(ValueError, match=r"state does not match this Minibatch: its arrays is "
                                         r"\[\{'shape': \[30\]\}\], here \[\{'shape': \[20\]\}\]"):
        other.load_state_dict(one)
    assert int(other.rng_state.get_value()) == 0
