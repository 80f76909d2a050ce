"""state_dict() / load_state_dict(): a JSON round trip resumes the stream
exactly; a state of another version, spec, seed, mode or data shape is
refused with a ValueError that names the field, and nothing changes."""
import json

import numpy as np
import pytest

from mbcore import Minibatch, minibatches

MODES = [dict(), dict(replace=False), dict(epochs=True), dict(epochs=True, epoch_end="drop"),
         dict(epochs=True, epoch_end="short")]


def roundtrip(state):
    return json.loads(json.dumps(state))


@pytest.mark.parametrize("mode", MODES, ids=lambda m: ",".join(f"{k}={v}" for k, v in m.items()))
@pytest.mark.parametrize("seed", [3, np.random.SeedSequence([1, 2 ** 70]),
                                  np.random.SeedSequence(9).spawn(2)[1]])
def test_round_trip_resumes_the_stream(mode, seed):
    data = np.arange(300.0).reshape(100, 3)
    mb = Minibatch(data, [32, None], random_seed=seed, **mode)
    for _ in range(7):
        next(mb)
    state = roundtrip(mb.state_dict())
    assert state["step"] == 7 and state["version"] == 1 and state["shard"] is None
    later = [next(mb) for _ in range(5)]
    fresh = Minibatch(data.copy(), [32, None], random_seed=seed, **mode)
    fresh.load_state_dict(state)
    assert fresh.step == 7
    for want in later:
        np.testing.assert_array_equal(next(fresh), want)


def test_group_round_trip():
    X = np.arange(200.0).reshape(100, 2)
    y = np.arange(100)
    g = minibatches(X, y, batch_size=16, random_seed=5, epochs=True)
    for _ in range(9):
        next(g)
    state = roundtrip(g.state_dict())
    assert state["format"] == "mbcore.Minibatches"
    assert [a["shape"] for a in state["arrays"]] == [[100, 2], [100]]
    want = next(g)
    h = minibatches(X, y, batch_size=16, random_seed=5, epochs=True)
    h.load_state_dict(state)
    for a, b in zip(next(h), want):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("other, field", [
    (lambda d: Minibatch(d, 32, random_seed=4), "seed"),
    (lambda d: Minibatch(d, 16, random_seed=3), "axes"),
    (lambda d: Minibatch(d, [(32, 3)], random_seed=3), None),     # the same streams
    (lambda d: Minibatch(d[:90], 32, random_seed=3), "arrays"),
    (lambda d: Minibatch(d, 32, random_seed=3, replace=False), "replace"),
    (lambda d: Minibatch(d, 32, random_seed=3, epochs=True), "replace"),
    (lambda d: Minibatch(d.reshape(100, 1), 32, random_seed=3), "axes"),
])
def test_mismatch_is_refused_and_changes_nothing(other, field):
    data = np.arange(100.0)
    mb = Minibatch(data, 32, random_seed=3)
    for _ in range(4):
        next(mb)
    state = roundtrip(mb.state_dict())
    target = other(data)
    next(target)
    if field is None:
        target.load_state_dict(state)
        assert target.step == 4
        return
    before = target.step, target.last_indices
    with pytest.raises(ValueError, match=rf"state does not match this Minibatch: its {field} "
                                         rf"is .*, here "):
        target.load_state_dict(state)
    assert (target.step, target.last_indices[0].tolist()) == (before[0], before[1][0].tolist())


def test_bad_states():
    mb = Minibatch(np.arange(10), 4)
    state = mb.state_dict()
    with pytest.raises(ValueError, match=r"state has version 2; this mbcore reads version 1"):
        mb.load_state_dict(dict(state, version=2))
    with pytest.raises(ValueError, match=r"state has version None"):
        mb.load_state_dict({})
    with pytest.raises(TypeError, match=r"state must be a dict from state_dict\(\), got str"):
        mb.load_state_dict("step=3")
    with pytest.raises(ValueError, match=r"state is of 'mbcore.Minibatches', not of "
                                         r"'mbcore.Minibatch'"):
        mb.load_state_dict(minibatches(np.arange(10), batch_size=4).state_dict())
    with pytest.raises(ValueError, match=r"state's step must be an int in \[0, 2\*\*64\), got -1"):
        mb.load_state_dict(dict(state, step=-1))
    assert mb.step == 0
