"""Bad input: a TypeError or ValueError that names the argument and shows the
value, and nothing lost (a rejected call leaves a Minibatch as it was)."""
import re

import numpy as np
import pytest

import twins
from mbcore import GeneratorAdapter, Minibatch, minibatches

X = np.arange(200.0).reshape(100, 2)


def esc(s):
    return re.escape(s)


# Each case: (id, callable, exception type, regex the message must match).
# The regex holds the argument's name and the offending value.
CASES = [
    # batch_size: wrong type
    ("batch_size-str", lambda: Minibatch(X, "10"), TypeError,
     esc("batch_size must be an int, got str '10'")),
    ("batch_size-float", lambda: Minibatch(X, 10.0), TypeError,
     esc("batch_size must be an int, got float 10.0")),
    ("batch_size-np-float", lambda: Minibatch(X, np.float64(4)), TypeError,
     "batch_size must be an int, got float64 .*4"),
    ("batch_size-bool", lambda: Minibatch(X, True), TypeError,
     esc("batch_size must be an int, got True")),
    ("batch_size-dict", lambda: Minibatch(X, {"size": 10}), TypeError,
     esc("batch_size must be an int, got dict {'size': 10}")),
    ("batch_size-entry-str", lambda: Minibatch(X, [5, "3"]), TypeError,
     esc("size must be an int, got str '3' in batch_size=[5, '3']")),
    ("batch_size-entry-bool", lambda: Minibatch(X, [False]), TypeError,
     esc("size must be an int, got False in batch_size=[False]")),
    ("batch_size-entry-float", lambda: Minibatch(X, [(2.5, 1)]), TypeError,
     esc("size must be an int, got float 2.5 in batch_size=[(2.5, 1)]")),
    # batch_size: wrong value
    ("batch_size-zero", lambda: Minibatch(X, 0), ValueError,
     esc("batch_size must be positive, got 0")),
    ("batch_size-negative", lambda: Minibatch(X, -5), ValueError,
     esc("batch_size must be positive, got -5")),
    ("batch_size-entry-zero", lambda: Minibatch(X, [0, 1]), ValueError,
     esc("size must be positive, got 0 in batch_size=[0, 1]")),
    ("batch_size-entry-negative", lambda: Minibatch(X, [(-2, 1)]), ValueError,
     esc("size must be positive, got -2 in batch_size=[(-2, 1)]")),
    ("batch_size-too-long", lambda: Minibatch(X, [1, 2, 3]), ValueError,
     esc("batch_size has 3 axis entries but the data has ndim=2: batch_size=[1, 2, 3]")),
    ("batch_size-too-long-with-ellipsis", lambda: Minibatch(X, [1, Ellipsis, 2, 3]),
     ValueError, esc("batch_size has 3 axis entries but the data has ndim=2")),
    ("batch_size-two-ellipsis", lambda: Minibatch(X, [1, Ellipsis, Ellipsis]), ValueError,
     esc("batch_size may hold at most one Ellipsis, got [1, Ellipsis, Ellipsis]")),
    ("batch_size-none", lambda: Minibatch(X, None), ValueError,
     esc("batch_size must sample at least one axis, got None")),
    ("batch_size-all-whole", lambda: Minibatch(X, [None, Ellipsis]), ValueError,
     esc("batch_size must sample at least one axis, got [None, Ellipsis]")),
    ("batch_size-empty-list", lambda: Minibatch(X, []), ValueError,
     esc("batch_size must sample at least one axis, got []")),
    # malformed (size, seed)
    ("pair-3-tuple", lambda: Minibatch(X, [(10, 42, 1)]), ValueError,
     esc("a (size, seed) entry of batch_size must have 2 items, got (10, 42, 1)")),
    ("pair-1-tuple", lambda: Minibatch(X, [(10,)]), ValueError,
     esc("a (size, seed) entry of batch_size must have 2 items, got (10,)")),
    ("pair-float-seed", lambda: Minibatch(X, [(10, 4.2)]), TypeError,
     esc("seed of batch_size entry (10, 4.2) must be an int or a "
         "numpy.random.SeedSequence, got float 4.2")),
    ("pair-str-seed", lambda: Minibatch(X, [(10, "42")]), TypeError,
     esc("seed of batch_size entry (10, '42') must be an int")),
    ("pair-none-seed", lambda: Minibatch(X, [(10, None)]), TypeError,
     esc("seed of batch_size entry (10, None) must be an int")),
    ("pair-negative-seed", lambda: Minibatch(X, [(10, -1)]), ValueError,
     esc("seed of batch_size entry (10, -1) must be non-negative, got -1")),
    # random_seed
    ("random_seed-str", lambda: Minibatch(X, 5, random_seed="42"), TypeError,
     esc("random_seed must be an int or a numpy.random.SeedSequence, got str '42'")),
    ("random_seed-float", lambda: Minibatch(X, 5, random_seed=4.2), TypeError,
     esc("random_seed must be an int or a numpy.random.SeedSequence, got float 4.2")),
    ("random_seed-bool", lambda: Minibatch(X, 5, random_seed=True), TypeError,
     esc("random_seed must be an int or a numpy.random.SeedSequence, got bool True")),
    ("random_seed-none", lambda: Minibatch(X, 5, random_seed=None), TypeError,
     esc("random_seed must be an int or a numpy.random.SeedSequence, got NoneType None")),
    ("random_seed-list", lambda: Minibatch(X, 5, random_seed=[1, 2]), TypeError,
     esc("random_seed must be an int or a numpy.random.SeedSequence, got list [1, 2]")),
    ("random_seed-negative", lambda: Minibatch(X, 5, random_seed=-3), ValueError,
     esc("random_seed must be non-negative, got -3")),
    # data
    ("data-0d", lambda: Minibatch(np.float64(3.0), 1), ValueError,
     "data must have at least one dimension, got a 0-d array .*3"),
    ("data-object", lambda: Minibatch(np.array([1, None, 3]), 1), TypeError,
     esc("data must not hold Python objects, got dtype object")),
    ("data-object-structured", lambda: Minibatch(np.zeros(3, [("a", "f8"), ("b", "O")]), 1),
     TypeError, "data must not hold Python objects, got dtype .*'O'"),
    ("data-ragged", lambda: Minibatch(np.array([[1, 2], [3]], dtype=object), 1), TypeError,
     esc("data must not hold Python objects")),
    ("data-empty-axis0", lambda: Minibatch(np.zeros((0, 3)), 2), ValueError,
     esc("data has an empty sampled axis 0 (shape (0, 3))")),
    ("data-empty-axis1", lambda: Minibatch(np.zeros((4, 0)), [None, 2]), ValueError,
     esc("data has an empty sampled axis 1 (shape (4, 0))")),
    ("dtype-object", lambda: Minibatch(X, 5, dtype=object), TypeError,
     esc("data must not hold Python objects, got dtype object")),
    ("dtype-bogus", lambda: Minibatch(X, 5, dtype="no-such-dtype"), TypeError,
     esc("dtype must be a NumPy dtype, got 'no-such-dtype'")),
    # replace=False
    ("noreplace-too-big", lambda: Minibatch(X, 101, replace=False), ValueError,
     esc("batch_size must be <= 100 (the length of axis 0) when replace=False, got 101")),
    ("noreplace-too-big-axis1", lambda: Minibatch(X, [None, 3], replace=False), ValueError,
     esc("batch_size must be <= 2 (the length of axis 1) when replace=False, got 3")),
    ("noreplace-too-big-pair", lambda: Minibatch(X, [(150, 1)], replace=False), ValueError,
     esc("batch_size must be <= 100 (the length of axis 0) when replace=False, got 150")),
    # update_shared_f
    ("update_shared_f-not-callable", lambda: Minibatch(X, 5, update_shared_f=3), TypeError,
     esc("update_shared_f must be callable, got 3")),
    # in_memory_size
    ("in_memory_size-zero", lambda: Minibatch(X, 5, in_memory_size=0), ValueError,
     esc("in_memory_size entries must be positive, got 0 in in_memory_size=0")),
    ("in_memory_size-negative", lambda: Minibatch(X, 5, in_memory_size=[-1]), ValueError,
     esc("in_memory_size entries must be positive, got -1 in in_memory_size=[-1]")),
    ("in_memory_size-str", lambda: Minibatch(X, 5, in_memory_size="10"), TypeError,
     esc("in_memory_size entries must be int, None, slice or Ellipsis, got str '10'")),
    ("in_memory_size-float", lambda: Minibatch(X, 5, in_memory_size=[2.0]), TypeError,
     esc("got float 2.0 in in_memory_size=[2.0]")),
    ("in_memory_size-bool", lambda: Minibatch(X, 5, in_memory_size=True), TypeError,
     esc("got bool True in in_memory_size=True")),
    ("in_memory_size-two-ellipsis", lambda: Minibatch(X, 5, in_memory_size=[..., ...]),
     ValueError, esc("in_memory_size may hold at most one Ellipsis, got [Ellipsis, Ellipsis]")),
    ("in_memory_size-too-long", lambda: Minibatch(X, 5, in_memory_size=[1, 2, 3]),
     ValueError, esc("in_memory_size has more axis entries than the data's ndim=2: "
                     "[1, 2, 3]")),
    ("in_memory_size-empties-sampled-axis",
     lambda: Minibatch(X, 5, in_memory_size=[slice(3, 3)]), ValueError,
     esc("data has an empty sampled axis 0 (shape (0, 2))")),
    # minibatches()
    ("minibatches-lengths", lambda: minibatches(X, np.zeros(99), batch_size=5), ValueError,
     esc("arrays must agree in length along sampled axis 0, got arrays[0]: 100, "
         "arrays[1]: 99")),
    ("minibatches-lengths-axis1",
     lambda: minibatches(np.zeros((4, 6)), np.zeros((4, 5)), batch_size=[None, 2]),
     ValueError, esc("arrays must agree in length along sampled axis 1, got arrays[0]: 6, "
                     "arrays[1]: 5")),
    ("minibatches-none", lambda: minibatches(batch_size=5), ValueError,
     esc("minibatches needs at least one array, got none")),
    ("minibatches-ndim", lambda: minibatches(X, np.zeros(100), batch_size=[5, 1]),
     ValueError, esc("batch_size has 2 axis entries but the data has ndim=1")),
    # batch sizes beyond what a batch may draw, or whose products overflow
    ("batch_size-2**63", lambda: Minibatch(X, 2 ** 63), ValueError,
     esc("batch_size must be at most 2**31 (2147483648), got 9223372036854775808 "
         "in batch_size=9223372036854775808")),
    ("batch_size-2**64+1", lambda: Minibatch(X, 2 ** 64 + 1), ValueError,
     esc("batch_size must be at most 2**31 (2147483648), got 18446744073709551617")),
    ("batch_size-pair-2**63", lambda: Minibatch(X, [(2 ** 63, 1)]), ValueError,
     esc("size must be at most 2**31 (2147483648), got 9223372036854775808 in "
         "batch_size=[(9223372036854775808, 1)]")),
    ("batch_size-empty-rows-2**61",
     lambda: next(Minibatch(np.zeros((10, 1, 0), np.uint8), [2 ** 61, 1])), ValueError,
     esc("size must be at most 2**31 (2147483648), got 2305843009213693952 in "
         "batch_size=[2305843009213693952, 1]")),
    ("batch_size-empty-rows-2**40", lambda: Minibatch(np.zeros((10, 0)), 2 ** 40), ValueError,
     esc("batch_size must be at most 2**31 (2147483648), got 1099511627776")),
    ("batch_size-noreplace-2**40",
     lambda: Minibatch(np.zeros((10, 1, 0), np.uint8), [2 ** 40, 1], replace=False),
     ValueError, esc("size must be at most 2**31 (2147483648), got 1099511627776")),
    ("batch_size-indices-in-all",
     lambda: Minibatch(np.zeros((10, 10, 0), np.uint8), [2 ** 31, 2 ** 31]), ValueError,
     esc("batch_size must draw at most 2**31 (2147483648) indices a batch in all, got "
         "4294967296 (sizes (2147483648, 2147483648) of the sampled axes)")),
    ("batch_size-noreplace-scratch",
     lambda: Minibatch(np.broadcast_to(np.uint8(0), (2 ** 40,)), 2 ** 31, replace=False),
     ValueError, esc("batch_size needs 85899345920 bytes of index scratch a batch, more "
                     "than the limit of 2**35 (34359738368): sizes (2147483648,)")),
    ("batch_size-batch-bytes",
     lambda: Minibatch(np.broadcast_to(0.0, (10, 2 ** 40)), 2 ** 24), ValueError,
     esc("batch_size gives batches of shape (16777216, 1099511627776) and "
         "147573952589676412928 bytes, more than the largest NumPy array")),
    # data that NumPy cannot make an array of, or that would lose something
    ("data-masked", lambda: Minibatch(np.ma.array([1.0, 2.0, 3.0], mask=[0, 1, 0]), 1),
     TypeError, esc("data must not be a numpy.ma.MaskedArray (batches would include the "
                    "masked entries), got a masked array of shape (3,)")),
    ("data-ragged-list", lambda: Minibatch([[1.0, 2.0], [3.0]], 1, dtype="float64"),
     # NumPy 1.23 makes an object array of it (with a warning)
     (ValueError, TypeError), "data must (be an array or a nested sequence of equal-length "
     r"sequences of numbers, got list \[\[1.0, 2.0\], \[3.0\]\]|"
     "have a dtype that casts to float64, got object)"),
    ("data-strings-to-float", lambda: Minibatch(["a", "b"], 1, dtype="float64"), TypeError,
     esc("data must have a dtype that casts to float64, got <U1 (casting='same_kind'")),
    ("data-strings-to-float-unsafe",
     lambda: Minibatch(["a", "b"], 1, dtype="float64", casting="unsafe"), ValueError,
     "data cannot be cast to dtype float64: could not convert string to float: .*'a'"),
    ("dtype-float-to-int", lambda: Minibatch([3e9], 1, dtype="int32"), TypeError,
     esc("data must have a dtype that casts to int32, got float64 (casting='same_kind'; "
         "casting='unsafe' allows any cast)")),
    ("casting-bogus", lambda: Minibatch(X, 1, casting="sometimes"), ValueError,
     esc("casting must be one of 'no', 'equiv', 'safe', 'same_kind', 'unsafe', "
         "got 'sometimes'")),
    ("casting-none", lambda: minibatches(X, X, batch_size=1, casting=None), ValueError,
     esc("casting must be one of 'no', 'equiv', 'safe', 'same_kind', 'unsafe', got None")),
    # GeneratorAdapter
    ("generator-empty", lambda: GeneratorAdapter(iter(())), ValueError,
     esc("generator must yield at least one item, got an empty tuple_iterator")),
]


@pytest.mark.parametrize("make, exc, pattern", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_is_rejected_with_a_clear_message(make, exc, pattern):
    with pytest.raises(exc, match=pattern):
        make()


# ------------------------------------------------------------------ steps

@pytest.mark.parametrize("method", ["seek", "draw", "indices"])
@pytest.mark.parametrize("step, exc, pattern", [
    ("3", TypeError, esc("step must be an int, got str '3'")),
    (3.0, TypeError, esc("step must be an int, got float 3.0")),
    (True, TypeError, esc("step must be an int, got bool True")),
    (None, TypeError, esc("step must be an int, got NoneType None")),
    (-1, ValueError, esc("step must be in [0, 2**64), got -1")),
    (2 ** 64, ValueError, esc("step must be in [0, 2**64), got 18446744073709551616")),
])
def test_bad_step(method, step, exc, pattern):
    mb = Minibatch(X, 5, random_seed=1)
    next(mb)
    with pytest.raises(exc, match=pattern):
        getattr(mb, method)(step)
    assert mb.step == 1
    np.testing.assert_array_equal(next(mb), twins.twin_minibatch(X, 5, 1, 1))


# ------------------------------------------------------------------ out=

def _read_only(shape):
    a = np.empty(shape)
    a.flags.writeable = False
    return a


BAD_OUTS = [
    ("shape", np.empty((4, 2)), esc("got shape (4, 2), dtype float64")),
    ("ndim", np.empty(10), esc("got shape (10,), dtype float64")),
    ("dtype", np.empty((5, 2), np.float32), esc("got shape (5, 2), dtype float32")),
    ("F-order", np.empty((2, 5)).T, esc("got shape (5, 2), dtype float64")),
    ("list", [[0.0] * 2] * 5, "got .*list"),
    ("read-only", _read_only((5, 2)), esc("got shape (5, 2), dtype float64")),
    ("zero-strides", np.broadcast_to(np.empty(2), (5, 2)), esc("got shape (5, 2)")),
]


@pytest.mark.parametrize("out, pattern", [b[1:] for b in BAD_OUTS],
                         ids=[b[0] for b in BAD_OUTS])
@pytest.mark.parametrize("method", ["next", "draw"])
def test_bad_out(method, out, pattern):
    mb = Minibatch(X, 5)
    call = mb.next if method == "next" else (lambda out: mb.draw(0, out=out))
    with pytest.raises(ValueError, match=esc("out must be a writeable C-contiguous array of "
                                             "shape (5, 2) and dtype float64, ") + pattern):
        call(out=out)


def test_bad_out_in_draw_loses_nothing():
    mb = Minibatch(X, 5, random_seed=2)
    with pytest.raises(ValueError):
        mb.draw(0, out=np.empty(3))
    assert mb.step == 0
    np.testing.assert_array_equal(next(mb), twins.twin_minibatch(X, 5, 0, 2))


def test_bad_out_in_next_loses_nothing():
    mb = Minibatch(X, 5, random_seed=2)
    next(mb)
    with pytest.raises(ValueError, match="out must be"):
        mb.next(out=np.empty(3))
    assert mb.step == 1
    np.testing.assert_array_equal(next(mb), twins.twin_minibatch(X, 5, 1, 2))


# ------------------------------------------------------------------ set_value

def _int_mb():
    data = np.arange(100 * 3).reshape(100, 3)
    return data, Minibatch(data, 6, random_seed=3)


SET_VALUE_CASES = [
    ("ndim-low", lambda: np.arange(100), ValueError,
     esc("value must have ndim=2, got ndim=1 (shape (100,))")),
    ("ndim-high", lambda: np.zeros((100, 3, 1), np.int64), ValueError,
     esc("value must have ndim=2, got ndim=3 (shape (100, 3, 1))")),
    ("0-d", lambda: np.int64(5), ValueError, "value must have ndim=2, got ndim=0|"
     "value must have at least one dimension"),
    ("float-into-int", lambda: np.ones((100, 3)), TypeError,
     esc("value must have a dtype that casts to int64, got float64")),
    ("complex-into-int", lambda: np.ones((100, 3), complex), TypeError,
     esc("value must have a dtype that casts to int64, got complex128")),
    ("str-into-int", lambda: np.full((100, 3), "a"), TypeError,
     esc("value must have a dtype that casts to int64, got <U1")),
    ("object", lambda: np.ones((100, 3), dtype=object), TypeError,
     esc("value must have a dtype that casts to int64, got object")),
    ("ragged", lambda: np.array([[1, 2, 3], [1]], dtype=object), TypeError,
     esc("got object")),
    ("empty-sampled-axis", lambda: np.zeros((0, 3), np.int64), ValueError,
     esc("value has an empty sampled axis 0 (shape (0, 3))")),
    ("masked", lambda: np.ma.zeros((100, 3), np.int64), TypeError,
     esc("value must not be a numpy.ma.MaskedArray")),
    ("ragged-list", lambda: [[1, 2, 3], [1]], (ValueError, TypeError),
     "value must (be an array or a nested sequence|have a dtype that casts to int64, "
     "got object)"),
]


def _assert_untouched(mb, data, step):
    assert mb.data is data
    assert mb.step == step
    assert mb.shape == (6, 3)
    for t in range(step, step + 3):
        np.testing.assert_array_equal(next(mb), twins.twin_minibatch(data, 6, t, 3))


@pytest.mark.parametrize("value, exc, pattern", [c[1:] for c in SET_VALUE_CASES],
                         ids=[c[0] for c in SET_VALUE_CASES])
def test_rejected_set_value_loses_nothing(value, exc, pattern):
    data, mb = _int_mb()
    for _ in range(4):
        next(mb)
    with pytest.raises(exc, match=pattern):
        mb.set_value(value())
    _assert_untouched(mb, data, 4)


@pytest.mark.parametrize("value, exc, pattern", [c[1:] for c in SET_VALUE_CASES],
                         ids=[c[0] for c in SET_VALUE_CASES])
def test_rejected_update_shared_loses_nothing(value, exc, pattern):
    data = np.arange(100 * 3).reshape(100, 3)
    mb = Minibatch(data, 6, random_seed=3, update_shared_f=value)
    next(mb)
    with pytest.raises(exc, match=pattern):
        mb.update_shared()
    _assert_untouched(mb, data, 1)


def test_rejected_set_value_noreplace_too_short_loses_nothing():
    data = np.arange(30.0)
    mb = Minibatch(data, 8, replace=False, random_seed=5)
    next(mb)
    with pytest.raises(ValueError, match=esc("batch_size must be <= 7 (the length of "
                                             "axis 0) when replace=False, got 8")):
        mb.set_value(np.arange(7.0))
    assert mb.data is data and mb.step == 1
    np.testing.assert_array_equal(next(mb), twins.twin_minibatch(data, 8, 1, 5, False))


def test_rejected_set_value_with_in_memory_size_loses_nothing():
    data = np.arange(100.0)
    mb = Minibatch(data, 5, in_memory_size=[slice(50, None)], random_seed=1)
    kept = mb.data
    with pytest.raises(ValueError, match=esc("value has an empty sampled axis 0")):
        mb.set_value(np.arange(40.0))          # [50:] of 40 rows is empty
    assert mb.data is kept
    np.testing.assert_array_equal(next(mb), twins.twin_minibatch(data[50:], 5, 0, 1))


@pytest.mark.parametrize("bad", ["False", 0, None])
def test_replace_must_be_bool(bad):
    with pytest.raises(TypeError, match=r"replace must be a bool, got .*" + repr(bad)[:3]):
        Minibatch(np.zeros(10), 3, replace=bad)


# ------------------------------------------------------------------ the kernel's own checks

def test_sampler_refuses_sizes_whose_products_overflow():
    # The index scratch of (2**61 + 1) indices would wrap around: refused
    # before anything is allocated.
    from mbcore._kernels._gather import Sampler
    data = np.zeros((10, 1, 0), np.uint8)
    key = twins.seed_key(1)
    with pytest.raises(ValueError, match=esc("batch_size must be at most 2**31 "
                                             "(2147483648) on every sampled axis, got "
                                             "2305843009213693952 on axis 0")):
        Sampler(data, [2 ** 61, 1, None], [key, key, None], True)
    with pytest.raises(ValueError, match=esc("got 18446744073709551617 on axis 0")):
        Sampler(data, [2 ** 64 + 1, 1, None], [key, key, None], False)
    with pytest.raises(ValueError, match=esc("indices a batch in all, got 4294967296")):
        Sampler(data, [2 ** 31, 2 ** 31, None], [key, key, None], True)


@pytest.mark.parametrize("arrays, exc, pattern", [
    ((X, np.ma.zeros(100)), TypeError, esc("arrays[1] must not be a numpy.ma.MaskedArray")),
    ((X, np.full(100, "a")), TypeError,
     esc("arrays[1] must have a dtype that casts to float32, got <U1")),
    ((np.zeros(3, dtype=object), X), TypeError,
     esc("arrays[0] must have a dtype that casts to float32, got object")),
], ids=["masked", "strings", "object"])
def test_group_names_the_array_it_refuses(arrays, exc, pattern):
    with pytest.raises(exc, match=pattern):
        minibatches(*arrays, batch_size=3, dtype="float32")
