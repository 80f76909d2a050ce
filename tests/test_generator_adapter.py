"""``mbcore.GeneratorAdapter``: later items keep their values or are refused
(a clear error that names the item and shows its values), keep the first
item's ndim, and a non-iterable is refused naming the argument."""
import pickle

import numpy as np
import pytest

from mbcore import GeneratorAdapter


def items_of(*items):
    return GeneratorAdapter(iter(items))


def test_not_iterable_names_the_argument():
    with pytest.raises(TypeError, match=r"^generator must be an iterator or an iterable of "
                                        r"arrays, got int 5$"):
        GeneratorAdapter(5)
    with pytest.raises(TypeError, match="got NoneType None"):
        GeneratorAdapter(None)


@pytest.mark.parametrize("first, later, dtype", [
    (0, 0.7, "int64"),                           # float values after an int
    ([0, 1], [0.7, 1.9], "int64"),
    (np.int8(1), 300, "int8"),                   # overflow
    (np.uint8(0), -1, "uint8"),                  # sign
    (np.float32(0), 0.1, "float32"),             # rounding
    (np.float32(0), 1e300, "float32"),           # overflow to inf
    (0.0, 2 ** 53 + 1, "float64"),               # an int float64 rounds
    (0, np.nan, "int64"),
    (0.0, 1 + 1j, "float64"),                    # imaginary part
    (True, 2, "bool"),
])
def test_a_later_item_that_would_change_is_refused(first, later, dtype):
    g = items_of(np.asarray(first), np.asarray(later))
    assert next(g).dtype == dtype
    with pytest.raises(ValueError, match=rf"^item 1 of the generator does not fit the first "
                                         rf"item's dtype {dtype} \(it has dtype .*; the cast "
                                         rf"would change its values\): "):
        next(g)


def test_refusal_shows_the_values():
    g = items_of([0, 1], [0.7, 1.9])
    next(g)
    with pytest.raises(ValueError, match=r"\[0\.7, 1\.9\]$"):
        next(g)


@pytest.mark.parametrize("first, later, expect", [
    (0, 1.0, 1),                                  # a float that is an int
    (np.float32([0, 0]), [1.5, 2.5], [1.5, 2.5]),  # exact in float32
    (np.float32(0), np.nan, np.nan),
    (0.0, 3, 3.0),
    (np.int16(0), np.int64(-7), -7),
    (0.0, 1 + 0j, 1.0),
    (np.uint8(0), True, 1),
])
def test_a_later_item_whose_values_fit_is_cast(first, later, expect):
    g = items_of(np.asarray(first), np.asarray(later))
    next(g)
    out = next(g)
    assert out.dtype == np.asarray(first).dtype
    np.testing.assert_array_equal(out, np.asarray(expect, dtype=out.dtype))


def test_a_later_item_of_another_ndim_is_refused():
    g = items_of(np.zeros(2), np.zeros(5), np.zeros((1, 2)), np.zeros(3))
    assert next(g).shape == (2,)
    assert next(g).shape == (5,)          # lengths may change, ndim may not
    with pytest.raises(ValueError, match=r"^item 2 of the generator has ndim=2 \(shape "
                                         r"\(1, 2\)\); the first item's ndim is 1: "):
        next(g)
    assert next(g).shape == (3,)          # the stream goes on after a refusal


def test_non_numeric_items_are_refused():
    with pytest.raises(TypeError, match="must be numeric arrays, got item 0 of dtype <U2"):
        items_of("ab")
    g = items_of(0, "a")
    next(g)
    with pytest.raises(TypeError, match=r"^item 1 of the generator has dtype <U1, which does "
                                        r"not cast to the first item's dtype int64: 'a'$"):
        next(g)


def test_items_are_new_arrays():
    buf = np.zeros(3)
    g = items_of(buf, buf)
    a, b = next(g), next(g)
    assert not np.shares_memory(a, buf) and not np.shares_memory(b, buf)


def test_pickles_with_a_picklable_iterator():
    g = GeneratorAdapter([np.zeros(2), np.ones(2)])
    next(g)
    h = pickle.loads(pickle.dumps(g))
    np.testing.assert_array_equal(next(h), np.ones(2))


def test_core_import_does_not_import_theano(tmp_path):
    import subprocess
    import sys
    code = ("import sys, mbcore\n"
            "g = mbcore.GeneratorAdapter(iter([1.0]))\n"
            "print(any(m == 'theano' or m.startswith('theano.') for m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=tmp_path).stdout.strip()
    assert out == "False"
