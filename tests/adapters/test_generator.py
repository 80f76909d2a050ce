"""``GeneratorOp``, ``generator`` and ``mbcore.GeneratorAdapter`` through
Theano behave as PyMC3's ``pymc3.theanof.GeneratorOp``, ``pm.generator`` and
``pm.GeneratorAdapter`` do: what they accept, the dtype they yield (floatX
for float items), test values, set_gen / set_default; and later items that
would change under the cast are refused, naming the variable."""
import numpy as np
import pytest

from mbcore.adapters.theano import (GeneratorExhausted, GeneratorOp,  # first: configures theano
                                    GeneratorVariable, generator)
import mbcore
import pymc3 as pm
import pymc3.theanof
import theano


def floats(n=3, shape=(2,)):
    return (np.full(shape, i + 0.5) for i in range(n))


@pytest.mark.parametrize("wrap", ["generator", "mbcore", "pymc3"])
def test_generator_op_accepts_what_pymc3s_accepts(wrap):
    gen = floats()
    if wrap == "mbcore":
        gen = mbcore.GeneratorAdapter(gen)
    elif wrap == "pymc3":
        gen = pm.GeneratorAdapter(gen)
    var = GeneratorOp(gen)()
    assert isinstance(var, GeneratorVariable) and var.op is var.owner.op
    f = theano.function([], var)
    assert [float(f()[0]) for _ in range(3)] == [0.5, 1.5, 2.5]
    with pytest.raises(GeneratorExhausted):
        f()


def test_generator_op_of_a_core_adapter_evaluates():
    # The Op used to take a private source object and failed when evaluated.
    var = GeneratorOp(mbcore.GeneratorAdapter(iter([np.float64(0)])))()
    assert float(var.eval()) == 0.0


def test_generator_op_takes_no_inputs():
    with pytest.raises(TypeError, match="GeneratorOp takes no inputs, got 1"):
        GeneratorOp(floats()).make_node(theano.tensor.dscalar())


@pytest.mark.parametrize("floatX", ["float32", "float64"])
def test_float_items_become_floatX_as_in_pymc3(floatX):
    with theano.config.change_flags(floatX=floatX):
        ours = generator(floats())
        theirs = pymc3.theanof.generator(floats())
        assert ours.dtype == theirs.dtype == floatX
        assert ours.tag.test_value.dtype == theirs.tag.test_value.dtype == floatX
        a, b = theano.function([], ours)(), theano.function([], theirs)()
        assert a.dtype == b.dtype == floatX
        np.testing.assert_array_equal(a, b)
        # Other dtypes are kept.
        ints = generator(np.arange(2, dtype=np.int16) + i for i in range(2))
        assert ints.dtype == "int16"


def test_tensortype_and_make_variable():
    with theano.config.change_flags(floatX="float32"):
        ad = mbcore.GeneratorAdapter(floats(shape=(2, 3)))
        theirs = pm.GeneratorAdapter(floats(shape=(2, 3)))
        assert ad.tensortype == theirs.tensortype == theano.tensor.TensorType(
            "float32", (False, False))
        assert ad.dtype == "float64"         # iterating the core adapter: the item's own
        op = GeneratorOp(ad)
        var = ad.make_variable(op, name="v")
        assert isinstance(var, GeneratorVariable) and var.name == "v" and var.op is op
        assert var.type == ad.tensortype
        assert var.tag.test_value.dtype == "float32" and var.tag.test_value[0, 0] == 0.5


def test_calling_the_op_does_not_consume_an_item_for_a_test_value():
    with theano.config.change_flags(compute_test_value="raise"):
        var = GeneratorOp(floats())()
    assert var.tag.test_value[0] == 0.5
    assert float(theano.function([], var)()[0]) == 0.5


def test_set_gen_and_set_default_on_the_op_and_the_variable():
    var = generator(floats(2), name="g")
    f = theano.function([], var)
    assert [float(f()[0]) for _ in range(2)] == [0.5, 1.5]
    var.op.set_default(np.full(2, -1.0))
    assert float(f()[0]) == -1.0
    var.set_gen(floats(1))
    assert float(f()[0]) == 0.5
    with pytest.raises(ValueError, match="the new generator yields int64 items"):
        var.set_gen(np.zeros(2, dtype=np.int64) for _ in range(2))
    with pytest.raises(ValueError, match=r"^default has ndim=0 \(shape \(\)\); the first "
                                         r"item's ndim is 1: 1$"):
        var.set_default(1)


def test_default_that_would_change_is_refused():
    var = generator((np.arange(2) for _ in range(2)), name="i")
    with pytest.raises(ValueError, match=r"^default does not fit the first item's dtype "
                                         r"int64 .*: \[0\.5, 1\. \]$"):
        var.set_default([0.5, 1.0])


def test_a_later_item_that_would_change_is_refused_naming_the_variable():
    var = generator(iter([np.array([0, 1]), np.array([0.7, 1.9]), np.array([2, 3])]),
                    name="counts")
    f = theano.function([], var)
    np.testing.assert_array_equal(f(), [0, 1])
    with pytest.raises(ValueError, match=r"the generator of variable 'counts': item 1 of "
                                         r"the generator does not fit the first item's dtype "
                                         r"int64 .*: \[0\.7, 1\.9\]"):
        f()
    np.testing.assert_array_equal(f(), [2, 3])


def test_generator_variable_is_a_drop_in_for_observed():
    # PyMC3 turns a generator passed as observed into pm.generator(...); with
    # ours it is the same density.
    def gen():
        for i in range(3):
            yield np.full((4, 2), float(i))
    with pm.Model() as model:
        pm.Normal("n", observed=generator(gen()), total_size=8)
        logp = theano.function([], model.logpt)
    from scipy import stats
    for i in range(3):
        np.testing.assert_allclose(logp(), 2 * stats.norm.logpdf(np.full((4, 2), float(i))).sum(),
                                   rtol=1e-5)
