"""PyMC3 statistical tests that compare a fit at one fixed seed with a
tolerance PyMC3's own random stream happens to meet: "file::test[id]" ->
the xfail reason, with the failure rates measured over many Minibatch seeds
by ``pymc3_seed_rates.py``.  Used by ``pymc3_dropin`` (xfail, not strict)
and ``test_pymc3_suite.py``; imports nothing."""

XFAIL = {
    # Measured: python tests/adapters/pymc3_seed_rates.py --seeds 0-60 (mbcore)
    # and --seeds 0-50 --stream pymc3 (PyMC3's own Minibatch; seed 0 ended in
    # an error and is not counted), -k "test_fit_oo and ASVGD and mini".
    "test_variational_inference.py::test_fit_oo[ASVGD-mini]": (
        "statistical at a fixed seed: ASVGD's posterior std must be within 20% of the "
        "exact one; over Minibatch seeds 0-59 it fails for 27/60 seeds (45%) with "
        "mbcore's stream, seed 42 (the test's) among them, and over seeds 1-49 for "
        "15/49 (31%) with PyMC3's own Minibatch, seed 42 not among them (Fisher exact "
        "test of the two rates: p = 0.17)"),
}
