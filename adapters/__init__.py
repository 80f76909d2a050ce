"""Graph adapters over the mbcore core (installed as ``mbcore.adapters``).

``mbcore.adapters.theano``: a drop-in ``Minibatch`` for PyMC3 3 / Theano
models (also ``minibatches``, ``generator``, ``align_minibatches``), whose
batches are the core's, drawn by the same kernels.  On NumPy >= 1.23 mbcore
supplies the Theano flag ``blas__ldflags=`` that theano-pymc 1.1.2 needs to
import, before theano is first imported (by pymc3, you or this adapter),
unless you set that flag yourself (``mbcore.adapters._theano_compat``).

Nothing is imported here, so ``import mbcore.adapters`` works without Theano.
"""
