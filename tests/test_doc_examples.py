"""The examples of PyMC3's Minibatch documentation (shared/reference/
pymc3-minibatch-doc.txt) that make sense without Theano, on mbcore.Minibatch.

Theano's ``x.eval()`` becomes ``next(x)``; ``x.shared.set_value`` becomes
``x.set_value``.  Every batch is also checked against the NumPy twin.
"""
import functools

import numpy as np
import pytest

import twins
from mbcore import GeneratorAdapter, Minibatch, get_data


@pytest.fixture
def data():
    # >>> data = np.random.rand(100, 100)
    return np.random.default_rng(100).random((100, 100))


def test_1d_slice_of_size_10(data):
    # >>> x = Minibatch(data, batch_size=10)
    x = Minibatch(data, batch_size=10)
    batch = next(x)
    assert batch.shape == (10, 100)
    assert x.total_size == 100
    twins.assert_same_array(batch, twins.twin_minibatch(data, 10, 0, 42))


def test_sampled_rows_and_columns_with_seeds_and_dtype(data):
    # >>> x = Minibatch(data, batch_size=[(10, 42), (10, 42)], dtype='int32')
    # >>> assert str(x.dtype) == 'int32'
    # float to int is an unsafe cast, which mbcore does only when asked to
    x = Minibatch(data, batch_size=[(10, 42), (10, 42)], dtype="int32", casting="unsafe")
    assert str(x.dtype) == "int32"
    batch = next(x)
    assert batch.shape == (10, 10) and str(batch.dtype) == "int32"
    twins.assert_same_array(batch, twins.twin_minibatch(data.astype("int32"),
                                                        [(10, 42), (10, 42)], 0))


def test_sampled_rows_and_columns_default_seed(data):
    # >>> x = Minibatch(data, batch_size=[10, 10])
    # >>> assert x.eval().shape == (10, 10)
    x = Minibatch(data, batch_size=[10, 10])
    assert next(x).shape == (10, 10)
    # "with default random seed = 42": the same stream as [(10, 42), (10, 42)]
    y = Minibatch(data, batch_size=[(10, 42), (10, 42)])
    twins.assert_same_array(x.draw(0), y.draw(0))
    # ... lik = pm.Normal('lik', mu, sd, observed=x, total_size=(100, 100))
    assert x.total_size == [100, 100]


def test_set_value_laplace(data):
    # >>> x.set_value(np.random.laplace(size=(100, 100)))
    x = Minibatch(data, batch_size=10)
    next(x)
    new = np.random.default_rng(1).laplace(size=(100, 100))
    x.set_value(new)
    assert x.data is new
    batch = next(x)
    twins.assert_same_array(batch, new[x.last_indices[0]])
    twins.assert_same_array(batch, twins.twin_minibatch(new, 10, 1, 42))


def test_update_shared_f_with_partial():
    # >>> from functools import partial
    # >>> datagen = partial(np.random.laplace, size=(100, 100))
    # >>> x = Minibatch(datagen(), batch_size=10, update_shared_f=datagen)
    # >>> x.update_shared()
    datagen = functools.partial(np.random.RandomState(7).laplace, size=(100, 100))
    x = Minibatch(datagen(), batch_size=10, update_shared_f=datagen)
    first = x.data
    x.update_shared()
    assert x.data is not first
    assert x.data.shape == (100, 100)
    assert not np.array_equal(x.data, first)
    twins.assert_same_array(next(x), twins.twin_minibatch(x.data, 10, 0, 42))


def test_the_demo_recipe(data):
    # The doc's demo: ridx = uniform(size=(10,), 0, n).astype('int64');
    # minibatch = shared[ridx].  Here: an exactly uniform ridx, same gather.
    x = Minibatch(data, batch_size=10)
    batch = next(x)
    ridx = x.last_indices[0]
    assert ridx.dtype == np.int64 and ridx.shape == (10,)
    assert ((0 <= ridx) & (ridx < 100)).all()
    twins.assert_same_array(batch, data[ridx])


def test_replacing_minibatch_by_test_data(data):
    # >>> node = x ** 2; testdata = np.random.laplace(size=(1000, 10))
    # Without a graph, "replacing x by testdata" is evaluating the expression on
    # testdata; on the minibatch it is the expression on the batch.
    x = Minibatch(data, batch_size=10)
    batch = next(x)
    np.testing.assert_array_equal(batch ** 2, data[x.last_indices[0]] ** 2)


@pytest.mark.parametrize("spec, shape, total_size", [
    # 1) Advanced indexing, total_size = (10, Ellipsis, 50)
    ([2, Ellipsis, 10], (2, 20, 30, 40, 10), [10, Ellipsis, 50]),
    # 2) Skipping particular dimension, total_size = (10, None, 30)
    ([2, None, 20], (2, 20, 20, 40, 50), [10, None, 30]),
    # 3) Mixing that all, total_size = (10, None, 30, Ellipsis, 50)
    ([2, None, 20, Ellipsis, 10], (2, 20, 20, 40, 10), [10, None, 30, Ellipsis, 50]),
])
def test_moredata(moredata, spec, shape, total_size):
    # >>> moredata = np.random.rand(10, 20, 30, 40, 50)
    # >>> x = Minibatch(moredata, spec); assert x.eval().shape == shape
    assert moredata.shape == (10, 20, 30, 40, 50)
    x = Minibatch(moredata, spec)
    batch = next(x)
    assert batch.shape == shape
    assert x.shape == shape
    assert x.total_size == total_size
    twins.assert_same_array(batch, twins.twin_minibatch(moredata, spec, 0, 42))


def test_moredata_default_total_size(moredata):
    # "default total_size that can be passed to PyMC3 random node is then
    # (10, 20, 30, 40, 50)": sampling every axis gives it.
    x = Minibatch(moredata, [1, 1, 1, 1, 1])
    assert x.total_size == [10, 20, 30, 40, 50]


def test_get_data_returns_bytesio():
    # "Returns a BytesIO object for a package data file."
    assert get_data("regression.csv").read(10) == b"x1,x2,x3,y"


def test_generator_adapter_infers_from_first_item_and_keeps_order():
    # "Helper class that helps to infer data type of generator with looking at
    # the first item, preserving the order of the resulting generator"
    gen = (np.arange(3.0) + i for i in range(4))
    g = GeneratorAdapter(gen)
    assert g.dtype == np.float64 and g.ndim == 1
    assert [float(a[0]) for a in g] == [0.0, 1.0, 2.0, 3.0]
