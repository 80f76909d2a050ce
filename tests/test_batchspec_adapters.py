"""What BatchSpec gives graph adapters beyond drawing: a value checked as
``set_value`` checks it (cast rule, ndim, ``in_memory_size``), the step held
by a graph's int64 step variable, and draws that follow an array changed in
place (what an adapter's shared data can do between two calls)."""
import numpy as np
import pytest

import twins
from mbcore import BatchSpec, Minibatch


def test_prepare_in_memory_size_equals_minibatch():
    data = np.arange(200.0).reshape(50, 4)
    spec = BatchSpec(8, random_seed=3)
    kept = spec.prepare(data, in_memory_size=[10, 2])
    assert kept.shape == (10, 2) and kept.flags.c_contiguous
    assert not np.shares_memory(kept, data)
    mb = Minibatch(data, 8, random_seed=3, in_memory_size=[10, 2])
    for t in range(3):
        twins.assert_same_array(spec.draw(t, kept)[0], mb.draw(t))
    assert spec.prepare(data) is data          # no cut, no cast: no copy


def test_prepare_checks_the_part_kept():
    spec = BatchSpec(8, replace=False)
    spec.prepare(np.zeros((50, 2)))
    with pytest.raises(ValueError, match=r"batch_size must be <= 5 \(the length of axis 0 of "
                                         r"value\) when replace=False, got 8"):
        spec.prepare(np.zeros((50, 2)), what="value", in_memory_size=5)
    with pytest.raises(TypeError, match=r"in_memory_size entries must be int, None, slice or "
                                        r"Ellipsis, got float 1.5"):
        spec.prepare(np.zeros((50, 2)), in_memory_size=[1.5])


def test_prepare_as_set_value_checks():
    spec = BatchSpec(4)
    old = np.zeros((10, 3))
    like = dict(dtype=old.dtype, casting="same_kind", ndim=old.ndim)
    got = spec.prepare(np.ones((12, 3), dtype=np.int32), what="value", **like)
    assert got.dtype == np.float64 and got.shape == (12, 3)
    with pytest.raises(TypeError, match=r"value must have a dtype that casts to float64, got "
                                        r"complex128 \(casting='same_kind'"):
        spec.prepare(np.zeros((10, 3), dtype=np.complex128), what="value", **like)
    with pytest.raises(ValueError, match=r"value must have ndim=2, got ndim=1 \(shape \(10,\)\)"):
        spec.prepare(np.zeros(10), what="value", **like)
    # Without a rule, a cast is NumPy's unsafe one (any cast), as for a new value.
    assert spec.prepare(np.ones((10, 3), dtype=np.float64), np.int8).dtype == np.int8


@pytest.mark.parametrize("step", [0, 1, 2 ** 63 - 2, np.int64(5), np.array(7, dtype=np.int64)])
def test_check_graph_step_accepts_the_steps_an_int64_variable_advances_from(step):
    assert BatchSpec.check_graph_step(step) == int(step)
    assert type(BatchSpec(3).check_graph_step(step)) is int


def test_check_graph_step_refuses_the_rest():
    assert BatchSpec.LAST_GRAPH_STEP == np.iinfo(np.int64).max
    with pytest.raises(ValueError, match=r"the minibatch step must be >= 0, got -1"):
        BatchSpec.check_graph_step(np.int64(-1))
    for step in (2 ** 63 - 1, 2 ** 63, 2 ** 64):
        with pytest.raises(OverflowError, match=rf"the minibatch step is {step}; an int64 step "
                                                r"variable draws no batch from 2\*\*63 - 1"):
            BatchSpec.check_graph_step(step)


@pytest.mark.parametrize("bound", [False, True], ids=["draw", "bind"])
def test_draws_follow_an_array_reshaped_in_place(bound):
    arr = np.arange(40.0).reshape(20, 2)
    spec = BatchSpec(3, random_seed=4)
    draw = spec.bind(arr) if bound else lambda t: spec.draw(t, arr)
    draw(0)
    arr.shape = (10, 4)                  # the same object, another shape
    if bound:
        draw = spec.bind(arr)
    twins.assert_same_array(draw(1)[0], Minibatch(arr.copy(), 3, random_seed=4).draw(1))


@pytest.mark.parametrize("kw", [dict(), dict(replace=False), dict(epochs=True),
                                dict(epochs=True, epoch_end="short"), dict(shard=(1, 2))],
                         ids=["replace", "no-replace", "epochs", "short", "shard"])
def test_bind_one_equals_draw(kw):
    data = np.arange(90.0).reshape(30, 3)
    spec = BatchSpec(8, random_seed=6, **kw)
    one = spec.bind_one(data)
    for t in range(6):               # past an epoch: a short batch with "short"
        (want,) = spec.draw(t, data)
        twins.assert_same_array(one(t), want)
        out = np.empty(spec.batch_shape(data.shape))
        got = one(t, out)
        twins.assert_same_array(got, want)
        assert (got is out) == (want.shape == out.shape)
    with pytest.raises(ValueError, match=r"arrays\[0\] must have at least ndim=2"):
        BatchSpec([2, 2]).bind_one(np.zeros(5))
