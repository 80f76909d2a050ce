# The minibatch tests of PyMC's tests/variational/test_inference.py, run
# against mbcore's adapter.
#
# Source: https://github.com/pymc-devs/pymc, tests/variational/test_inference.py
# at commit 1dfff3f1994430d346dbaaba21f1bcf561229c4c, the newest version of
# the file in the stored snapshot this copy was taken from, which does not
# hold the tag v5.28.5 (commit 1ad929ca6bced2a4848e655408dbf86849325084, the
# full-revisionid of the 5.28.5 sdist's pymc/_version.py).  Every PyMC name
# the tests below use is in pymc 5.28.5.
#
# Taken: the tests that draw minibatches, with the fixtures they use and
# PyMC's code of both unchanged: test_fit_oo, test_fit_start, test_profile
# and test_fit_data with ``use_minibatch`` True ("mini"), for ADVI,
# FullRankADVI, SVGD and ASVGD (PyMC's own ``fit_kwargs`` skips SVGD and
# ASVGD over minibatches as not implemented), test_sample_posterior_after_
# minibatch and test_multiple_minibatch_variables.  Left out: the tests that
# draw no minibatch (test_fit_with_nans, test_fit_fn_text, test_replacements,
# test_sample_replacements, test_remove_scan_op, test_var_replacement,
# test_clear_cache, test_fit_data_coords, test_sample_outside_model_context)
# and the fixtures and imports only they use (``tests.models``, ``opvi``,
# ``floatX``, ``pytensor``, ``operator``, ``io``, ``cloudpickle``).
#
# Adapted, and nothing else:
#
# 1. ``pm.Minibatch`` is mbcore.adapters.pytensor.Minibatch while these tests
#    run (conftest.py, fixture ``adapter_as_pm_minibatch``).
# 2. ``use_minibatch`` has the parameter True ("mini") only, where PyMC's has
#    True and False ("mini", "full"): the full-data runs draw no minibatch.
# 3. The fixtures ``strict_float32``, ``seeded_test`` and ``fail_on_warning``
#    come from PyMC's tests/conftest.py by way of conftest.py here.
# 4. test_sample_posterior_after_minibatch is marked xfail (strict): it fails
#    the same way with PyMC's own pm.Minibatch on pymc 5.28.5 (checked: an
#    xarray CoordinateValidationError, "length 2 on the data but length 3 on
#    coordinate 'obs_id'").  In 5.28.5 ``Approximation.sample`` records the
#    trace with the fitted model (``self.model``), whose deterministic y_hat
#    is computed from the 2-row minibatch, not with the model of the active
#    context (``model_post``, the minibatch removed) that this later version
#    of the test expects.
#
# PyMC's license notice follows, as in the original.
#
#   Copyright 2024 - present The PyMC Developers
#
#   Licensed under the Apache License, Version 2.0 (the "License");
#   you may not use this file except in compliance with the License.
#   You may obtain a copy of the License at
#
#       http://www.apache.org/licenses/LICENSE-2.0
#
#   Unless required by applicable law or agreed to in writing, software
#   distributed under the License is distributed on an "AS IS" BASIS,
#   WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
#   See the License for the specific language governing permissions and
#   limitations under the License.

import warnings

import numpy as np
import pytensor.tensor as pt
import pytest

import pymc as pm

from pymc.model.transform.basic import remove_minibatched_nodes
from pymc.variational.inference import ADVI, ASVGD, SVGD, FullRankADVI
from pymc.variational.opvi import NotImplementedInference

pytestmark = pytest.mark.usefixtures("strict_float32", "seeded_test", "fail_on_warning")


# adapted: PyMC's has params=[True, False], ids=["mini", "full"]
@pytest.fixture(scope="module", params=[True], ids=["mini"])
def use_minibatch(request):
    return request.param


@pytest.fixture
def simple_model_data(use_minibatch):
    n = 1000
    sigma0 = 2.0
    mu0 = 4.0
    sigma = 3.0
    mu = -5.0

    data = sigma * np.random.randn(n) + mu
    d = n / sigma**2 + 1 / sigma0**2
    mu_post = (n * np.mean(data) / sigma**2 + mu0 / sigma0**2) / d
    if use_minibatch:
        data = pm.Minibatch(data, batch_size=128)
    return {
        "n": n,
        "data": data,
        "mu_post": mu_post,
        "d": d,
        "mu0": mu0,
        "sigma0": sigma0,
        "sigma": sigma,
    }


@pytest.fixture
def simple_model(simple_model_data):
    with pm.Model() as model:
        mu_ = pm.Normal(
            "mu",
            mu=pt.as_tensor_variable(simple_model_data["mu0"]).astype("floatX"),
            sigma=pt.as_tensor_variable(simple_model_data["sigma0"]).astype("floatX"),
            initval=0,
        )
        pm.Normal(
            "x",
            mu=mu_,
            sigma=pt.as_tensor_variable(simple_model_data["sigma"]).astype("floatX"),
            observed=simple_model_data["data"],
            total_size=simple_model_data["n"],
        )
    return model


@pytest.fixture(
    scope="module",
    params=[
        {"cls": ADVI, "init": {}},
        {"cls": FullRankADVI, "init": {}},
        {"cls": SVGD, "init": {"n_particles": 500, "jitter": 1}},
        {"cls": ASVGD, "init": {"temperature": 1.0}},
    ],
    ids=["ADVI", "FullRankADVI", "SVGD", "ASVGD"],
)
def inference_spec(request):
    cls = request.param["cls"]
    init = request.param["init"]

    def init_(**kw):
        k = init.copy()
        k.update(kw)
        if cls == ASVGD:
            with pytest.warns(UserWarning, match="experimental inference Operator"):
                return cls(**k)
        else:
            return cls(**k)

    init_.cls = cls
    return init_


@pytest.fixture(scope="function")
def inference(inference_spec, simple_model):
    with simple_model:
        return inference_spec(random_seed=42)


@pytest.fixture(scope="function")
def fit_kwargs(inference, use_minibatch):
    _select = {
        (ADVI, "full"): {
            "obj_optimizer": pm.adagrad_window(learning_rate=0.02, n_win=50),
            "n": 5000,
        },
        (ADVI, "mini"): {
            "obj_optimizer": pm.adagrad_window(learning_rate=0.01, n_win=50),
            "n": 12000,
        },
        (FullRankADVI, "full"): {
            "obj_optimizer": pm.adagrad_window(learning_rate=0.015, n_win=50),
            "n": 6000,
        },
        (FullRankADVI, "mini"): {
            "obj_optimizer": pm.adagrad_window(learning_rate=0.007, n_win=50),
            "n": 12000,
        },
        (SVGD, "full"): {
            "obj_optimizer": pm.adagrad_window(learning_rate=0.075, n_win=7),
            "n": 300,
        },
        (SVGD, "mini"): {
            "obj_optimizer": pm.adagrad_window(learning_rate=0.075, n_win=7),
            "n": 300,
        },
        (ASVGD, "full"): {
            "obj_optimizer": pm.adagrad_window(learning_rate=0.07, n_win=10),
            "n": 500,
            "obj_n_mc": 300,
        },
        (ASVGD, "mini"): {
            "obj_optimizer": pm.adagrad_window(learning_rate=0.07, n_win=10),
            "n": 500,
            "obj_n_mc": 300,
        },
    }
    if use_minibatch:
        key = "mini"
        # backward compat for PR#3071
        inference.approx.scale_cost_to_minibatch = False
    else:
        key = "full"
    if (type(inference), key) in {(SVGD, "mini"), (ASVGD, "mini")}:
        pytest.skip("Not Implemented Inference")
    return _select[(type(inference), key)]


def test_fit_oo(inference, fit_kwargs, simple_model, simple_model_data):
    with simple_model:
        trace = inference.fit(**fit_kwargs).sample(10000)
    mu_post = simple_model_data["mu_post"]
    d = simple_model_data["d"]
    np.testing.assert_allclose(np.mean(trace.posterior["mu"]), mu_post, rtol=0.05)
    np.testing.assert_allclose(np.std(trace.posterior["mu"]), np.sqrt(1.0 / d), rtol=0.2)


def test_fit_start(inference_spec, simple_model):
    mu_init = 17
    mu_sigma_init = 13

    with simple_model:
        if type(inference_spec()) is ASVGD:
            # ASVGD doesn't support the start argument
            return
        elif type(inference_spec()) is ADVI:
            has_start_sigma = True
        else:
            has_start_sigma = False

    kw = {"start": {"mu": mu_init}}
    if has_start_sigma:
        kw.update({"start_sigma": {"mu": mu_sigma_init}})
    with simple_model:
        inference = inference_spec(**kw)

    try:
        with simple_model:
            trace = inference.fit(n=0).sample(10000)
    except NotImplementedInference as e:
        pytest.skip(str(e))

    np.testing.assert_allclose(np.mean(trace.posterior["mu"]), mu_init, rtol=0.05)
    if has_start_sigma:
        np.testing.assert_allclose(np.std(trace.posterior["mu"]), mu_sigma_init, rtol=0.05)


def test_profile(inference):
    if type(inference) in {SVGD, ASVGD}:
        pytest.skip("Not Implemented Inference")
    inference.run_profiling(n=100).summary()


def test_fit_data(inference, fit_kwargs, simple_model_data):
    fitted = inference.fit(**fit_kwargs)
    mu_post = simple_model_data["mu_post"]
    d = simple_model_data["d"]
    np.testing.assert_allclose(fitted.mean_data["mu"].values, mu_post, rtol=0.05)
    np.testing.assert_allclose(fitted.std_data["mu"], np.sqrt(1.0 / d), rtol=0.2)


# adapted: xfail, see the header
@pytest.mark.xfail(raises=ValueError, strict=True,
                   reason="pymc 5.28.5's Approximation.sample uses the fitted model, whose "
                          "y_hat is a minibatch; the same failure with pm.Minibatch")
def test_sample_posterior_after_minibatch():
    with pm.Model(coords={"obs_id": [0, 1, 2]}) as model:
        x = pm.Data("x", [1.0, 2.0, 3.0], dims="obs_id")
        y = pm.Data("y", [1.0, 2.0, 3.0], dims="obs_id")
        x_mini, y_mini = pm.Minibatch(x, y, batch_size=2)
        beta = pm.Normal("beta", 0, 10.0)
        y_hat = pm.Deterministic("y_hat", beta * x_mini, dims="obs_id")
        pm.Normal("obs", y_hat, np.sqrt(1e-2), observed=y_mini, total_size=3, dims="obs_id")
        approx = pm.fit(
            10,
            method="advi",
            progressbar=False,
        )

    model_post = remove_minibatched_nodes(model)
    with model_post:
        trace = approx.sample(500)

    assert trace.posterior["beta"].shape == (1, 500)
    assert trace.constant_data["x"].shape == (3,)
    assert trace.observed_data["obs"].shape == (3,)

    with model_post, warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Numba will use object mode", UserWarning)
        x_test = [5, 6, 9, 12, 15]
        pm.set_data(
            new_data={"x": x_test, "y": [0.0] * len(x_test)},
            coords={"obs_id": list(range(len(x_test)))},
        )
        y_test = pm.sample_posterior_predictive(trace, predictions=True, progressbar=False)

    assert y_test.predictions["obs"].shape == (1, 500, 5)


def test_multiple_minibatch_variables():
    """Regression test for bug reported in
    https://discourse.pymc.io/t/verifying-that-minibatch-is-actually-randomly-sampling/14308
    """
    true_weights = np.array([-5, 5] * 5)
    feature = np.repeat(np.eye(10), 10_000, axis=0)
    y = feature @ true_weights

    with pm.Model() as model:
        minibatch_feature, minibatch_y = pm.Minibatch(feature, y, batch_size=1)
        weights = pm.Normal("weights", 0, 10, shape=10)
        pm.Normal(
            "y",
            mu=minibatch_feature @ weights,
            sigma=0.01,
            observed=minibatch_y,
            total_size=len(y),
        )
        mean_field = pm.fit(10_000, obj_optimizer=pm.adam(learning_rate=0.01), progressbar=False)
    np.testing.assert_allclose(mean_field.mean.get_value(), true_weights, rtol=1e-1)
