"""Every example of ../shared/reference/pymc3-minibatch-doc.txt, with our Minibatch.

The examples run in the doc's order where they depend on each other (x is
reassigned as the page goes); each test says which lines it covers.  Where
the page only runs a statement, the test also checks what the statement is
for.
"""
from functools import partial
import io

import numpy as np
import pytest

from mbcore.adapters.theano import Minibatch, generator  # first: configures theano
import mbcore
import pymc3 as pm
import theano


@pytest.fixture
def data():
    """>>> data = np.random.rand(100, 100)"""
    return np.random.default_rng(0).random((100, 100))


def test_1d_slice_of_size_10(data):
    # >>> x = Minibatch(data, batch_size=10)
    x = Minibatch(data, batch_size=10)
    batch = x.eval()
    assert batch.shape == (10, 100)
    # "your data is cast to floatX if it is not integer type"
    assert x.dtype == theano.config.floatX
    rows = {tuple(np.asarray(r, np.float64)) for r in data.astype(x.dtype)}
    assert all(tuple(np.asarray(r, np.float64)) in rows for r in batch)


def test_integer_data_is_not_cast():
    x = Minibatch(np.arange(100, dtype=np.int16).reshape(50, 2), batch_size=5)
    assert x.dtype == "int16"
    assert x.eval().dtype == np.int16


def test_sized_seeded_axes_with_dtype(data):
    # >>> x = Minibatch(data, batch_size=[(10, 42), (10, 42)], dtype='int32')
    # >>> assert str(x.dtype) == 'int32'
    x = Minibatch(data, batch_size=[(10, 42), (10, 42)], dtype="int32")
    assert str(x.dtype) == "int32"
    assert x.eval().shape == (10, 10)


def test_default_seed_sizes(data):
    # >>> x = Minibatch(data, batch_size=[10, 10])
    # >>> assert x.eval().shape == (10, 10)
    x = Minibatch(data, batch_size=[10, 10])
    assert x.eval().shape == (10, 10)
    # "x is a regular TensorVariable that supports any math"
    y = (x * 2 + 1).sum(axis=0)
    assert y.eval().shape == (10,)


def test_model_and_fit(data):
    # >>> with pm.Model() as model:
    # ...     mu = pm.Flat('mu')
    # ...     sd = pm.HalfNormal('sd')
    # ...     lik = pm.Normal('lik', mu, sd, observed=x, total_size=(100, 100))
    # >>> with model:
    # ...     approx = pm.fit()
    x = Minibatch(data, batch_size=[10, 10])
    with pm.Model() as model:
        mu = pm.Flat("mu")
        sd = pm.HalfNormal("sd")
        lik = pm.Normal("lik", mu, sd, observed=x, total_size=(100, 100))  # noqa: F841
    with model:
        approx = pm.fit()
    assert len(approx.hist) == 10000 and np.isfinite(approx.hist).all()
    # The loss falls: the fit learned something from the minibatches.
    assert approx.hist[-500:].mean() < approx.hist[:500].mean()
    means = approx.bij.rmap(approx.mean.eval())
    assert abs(means["mu"] - data.mean()) < 0.1


def test_total_size_scales_our_batch(data):
    """The observed node sees our batch, scaled by total_size: the model's
    logp at a point equals the batch's logp times (100 * 100) / (10 * 10)."""
    x = Minibatch(data, batch_size=[10, 10], random_seed=3)
    with pm.Model() as model:
        mu = pm.Flat("mu")
        sd = pm.HalfNormal("sd")
        pm.Normal("lik", mu, sd, observed=x, total_size=(100, 100))
    logp = model.fastfn(model.observed_RVs[0].logpt)
    point = {"mu": np.array(0.4), "sd_log__": np.array(np.log(0.3))}
    core = mbcore.Minibatch(data.astype(x.dtype), batch_size=[10, 10], random_seed=3)
    for t in range(3):
        batch = core.draw(t)
        expected = pm.Normal.dist(0.4, 0.3).logp(batch).sum().eval() * 100
        np.testing.assert_allclose(logp(point), expected, rtol=1e-5)


def test_set_value_and_shared_set_value(data):
    # >>> x.set_value(np.random.laplace(size=(100, 100)))
    x = Minibatch(data, batch_size=10)
    new = np.random.default_rng(1).laplace(size=(100, 100))
    x.set_value(new)
    # "minibatches will be then from new storage: it directly affects x.shared"
    np.testing.assert_array_equal(x.shared.get_value(), new.astype(x.dtype))
    rows = {tuple(r) for r in new.astype(x.dtype)}
    assert all(tuple(r) in rows for r in x.eval())
    # >>> x.shared.set_value(pm.floatX(np.random.laplace(size=(100, 100))))
    newer = pm.floatX(np.random.default_rng(2).laplace(size=(100, 100)))
    x.shared.set_value(newer)
    rows = {tuple(r) for r in newer}
    assert all(tuple(r) in rows for r in x.eval())


def test_update_shared():
    # >>> from functools import partial
    # >>> datagen = partial(np.random.laplace, size=(100, 100))
    # >>> x = Minibatch(datagen(), batch_size=10, update_shared_f=datagen)
    # >>> x.update_shared()
    datagen = partial(np.random.laplace, size=(100, 100))
    x = Minibatch(datagen(), batch_size=10, update_shared_f=datagen)
    before = x.shared.get_value().copy()
    x.update_shared()
    after = x.shared.get_value()
    assert after.shape == (100, 100) and not np.array_equal(before, after)
    rows = {tuple(r) for r in after}
    assert all(tuple(r) in rows for r in x.eval())


def test_reference_graph(data):
    # >>> shared = theano.shared(data)
    # >>> ridx = pm.tt_rng().uniform(size=(10,), low=0, high=data.shape[0]-1e-10).astype('int64')
    # >>> minibatch = shared[ridx]
    shared = theano.shared(data)
    ridx = pm.tt_rng().uniform(size=(10,), low=0, high=data.shape[0] - 1e-10).astype("int64")
    minibatch = shared[ridx]
    assert minibatch.eval().shape == (10, 100)


def test_clone_replace_with_testdata():
    # >>> node = x ** 2
    # >>> testdata = pm.floatX(np.random.laplace(size=(1000, 10)))
    # >>> replacements = {x: testdata}
    # >>> rnode = theano.clone(node, replacements)
    # >>> assert (testdata ** 2 == rnode.eval()).all()
    datagen = partial(np.random.laplace, size=(100, 100))
    x = Minibatch(datagen(), batch_size=10, update_shared_f=datagen)
    node = x ** 2
    testdata = pm.floatX(np.random.laplace(size=(1000, 10)))
    replacements = {x: testdata}
    rnode = theano.clone(node, replacements)
    assert (testdata ** 2 == rnode.eval()).all()


def test_clone_replace_minibatch_with_shared():
    # >>> replacements = {x.minibatch: x.shared}
    # >>> rnode = theano.clone(node, replacements)
    datagen = partial(np.random.laplace, size=(100, 100))
    x = Minibatch(datagen(), batch_size=10, update_shared_f=datagen)
    node = x ** 2
    replacements = {x.minibatch: x.shared}
    rnode = theano.clone(node, replacements)
    # The whole data, squared; no minibatch left in the graph.
    np.testing.assert_array_equal(rnode.eval(), x.shared.get_value() ** 2)
    assert rnode.eval().shape == (100, 100)


@pytest.mark.parametrize("spec,shape,total", [
    ([2, Ellipsis, 10], (2, 20, 30, 40, 10), [10, Ellipsis, 50]),
    ([2, None, 20], (2, 20, 20, 40, 50), [10, None, 30]),
    ([2, None, 20, Ellipsis, 10], (2, 20, 20, 40, 10), [10, None, 30, Ellipsis, 50]),
], ids=["ellipsis", "none", "mixed"])
def test_more_complex_slices(moredata, spec, shape, total):
    # >>> moredata = np.random.rand(10, 20, 30, 40, 50)
    # >>> x = Minibatch(moredata, [2, Ellipsis, 10])
    # >>> assert x.eval().shape == (2, 20, 30, 40, 10)   (and the two others)
    x = Minibatch(moredata, spec)
    assert x.eval().shape == shape
    # "default total_size ... can be less verbose": what to pass to PyMC3.
    assert x.total_size == total


def test_clone_copies_tags_and_name(data):
    # "Return a new Variable like self ... Tags are copied to the returned
    # instance.  Name is copied to the returned instance."
    x = Minibatch(data, batch_size=10, name="xb")
    x.tag.note = "kept"
    c = x.clone()
    assert c is not x and c.owner is None and c.index is None
    assert c.type == x.type and c.name == "xb"
    assert c.tag.note == "kept" and c.tag is not x.tag
    np.testing.assert_array_equal(c.tag.test_value, x.tag.test_value)


def test_get_data_returns_bytesio():
    # "Returns a BytesIO object for a package data file."
    buf = mbcore.get_data("regression.csv")
    assert isinstance(buf, io.BytesIO)
    assert buf.read(11) == b"x1,x2,x3,y\n"


def test_generator_keeps_order_and_infers_type():
    # "Helper class that helps to infer data type of generator with looking
    # at the first item, preserving the order of the resulting generator"
    v = generator(np.full((2, 3), i, dtype=np.int32) for i in range(4))
    assert v.dtype == "int32" and v.ndim == 2
    f = theano.function([], v + 0)
    assert [int(f()[0, 0]) for _ in range(4)] == [0, 1, 2, 3]
