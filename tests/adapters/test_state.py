"""A stream's state moves between the core and the Theano adapter in each
direction: ``state_dict`` of one loads into ``load_state_dict`` of the other
(one array: ``mbcore.Minibatch``; several: ``mbcore.minibatches``), and the
next batches are equal."""
import json

import numpy as np
import pytest

from mbcore.adapters.theano import Minibatch, minibatches  # first: configures theano
import mbcore
import theano

MODES = [dict(), dict(replace=False), dict(epochs=True), dict(epochs=True, epoch_end="drop"),
         dict(shard=(1, 2))]
IDS = ["replace", "no-replace", "epochs", "epochs-drop", "shard"]


def moved(state):
    """The state as it comes back from a file."""
    return json.loads(json.dumps(state))


@pytest.mark.parametrize("mode", MODES, ids=IDS)
def test_core_to_theano_and_back(mode):
    data = np.random.default_rng(0).standard_normal((40, 3))
    core = mbcore.Minibatch(data, 8, random_seed=5, **mode)
    for _ in range(7):
        next(core)
    x = Minibatch(data, batch_size=8, random_seed=5, dtype="float64", **mode)
    x.load_state_dict(moved(core.state_dict()))
    assert int(x.rng_state.get_value()) == 7
    f = theano.function([], x)
    for _ in range(3):
        np.testing.assert_array_equal(f(), next(core))
    back = mbcore.Minibatch(data, 8, random_seed=5, **mode)
    back.load_state_dict(moved(x.state_dict()))
    assert back.step == 10
    np.testing.assert_array_equal(next(back), f())
    assert x.state_dict() == back.state_dict()


@pytest.mark.parametrize("mode", MODES, ids=IDS)
def test_group_core_to_theano_and_back(mode):
    X = np.random.default_rng(1).standard_normal((30, 2))
    y = np.arange(30.0)
    core = mbcore.minibatches(X, y, batch_size=6, random_seed=2, **mode)
    for _ in range(4):
        next(core)
    xb, yb = minibatches(X, y, batch_size=6, random_seed=2, dtype="float64", **mode)
    xb.load_state_dict(moved(core.state_dict()))
    f = theano.function([], [xb, yb])
    for _ in range(2):
        for a, b in zip(f(), next(core)):
            np.testing.assert_array_equal(a, b)
    back = mbcore.minibatches(X, y, batch_size=6, random_seed=2, **mode)
    back.load_state_dict(moved(yb.state_dict()))
    for a, b in zip(f(), next(back)):
        np.testing.assert_array_equal(a, b)


def test_a_state_of_other_data_or_spec_changes_nothing():
    data = np.zeros((40, 3))
    x = Minibatch(data, batch_size=8, random_seed=5, dtype="float64")
    with pytest.raises(ValueError, match=r"state does not match this Minibatch: its arrays is "
                                         r"\[\{'shape': \[41, 3\]\}\], here \[\{'shape': "
                                         r"\[40, 3\]\}\]"):
        x.load_state_dict(mbcore.Minibatch(np.zeros((41, 3)), 8, random_seed=5).state_dict())
    with pytest.raises(ValueError, match=r"its seed is 6, here 5"):
        x.load_state_dict(mbcore.Minibatch(data, 8, random_seed=6).state_dict())
    with pytest.raises(ValueError, match=r"state is of 'mbcore.Minibatches', not of "
                                         r"'mbcore.Minibatch'"):
        x.load_state_dict(mbcore.minibatches(data, data, batch_size=8,
                                             random_seed=5).state_dict())
    assert int(x.rng_state.get_value()) == 0


def test_a_step_past_the_int64_state_is_refused():
    data = np.zeros((40, 3))
    core = mbcore.Minibatch(data, 8, random_seed=5)
    x = Minibatch(data, batch_size=8, random_seed=5, dtype="float64")
    for step in (2 ** 63 - 1, 2 ** 64 - 1):
        core.seek(step)
        with pytest.raises(OverflowError, match=rf"the minibatch step is {step}; an int64 step "
                                                r"variable draws no batch"):
            x.load_state_dict(core.state_dict())
    core.seek(2 ** 63 - 2)
    x.load_state_dict(core.state_dict())
    np.testing.assert_array_equal(theano.function([], x)(), next(core))
