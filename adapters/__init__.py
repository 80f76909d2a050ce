"""Graph adapters over the mbcore core (installed as ``mbcore.adapters``).

``mbcore.adapters.theano``: a drop-in ``Minibatch`` for PyMC3 3 / Theano
models (also ``minibatches``, ``generator``, ``align_minibatches``), whose
batches are the core's, drawn by the same kernels.  Before theano is first
imported (by pymc3, you or this adapter) mbcore sets up what theano-pymc
1.1.2 needs on NumPy >= 1.23 and Python 3.11: the Theano flag
``blas__ldflags`` (pointing at the OpenBLAS in SciPy's wheel), unless you set
it yourself, and Theano's Python scan where its compiled one cannot be built
(``mbcore.adapters._theano_compat``).

Nothing is imported here, so ``import mbcore.adapters`` works without Theano.
"""
