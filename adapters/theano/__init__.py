"""A drop-in ``Minibatch`` for PyMC3 3 / Theano models, drawn by mbcore's kernels.

    import pymc3 as pm
    from mbcore.adapters.theano import Minibatch

theano-pymc 1.1.2 cannot be imported on NumPy >= 1.23 unless its
``blas__ldflags`` setting has a value, and its compiled scan does not build on
Python 3.11; before theano is first imported, whoever imports it, mbcore
points the setting at the OpenBLAS in SciPy's wheel (unless you set it
yourself) and has Scan use Theano's Python implementation where the compiled
one cannot be built (``mbcore.adapters._theano_compat``, which stays outside
this package: the start-up hook imports it while ``theano`` is being
imported, before this package could be).

What is here
------------
``Minibatch``      a TensorVariable that is the output of a ``MinibatchOp``,
                   with PyMC3's ``Minibatch`` API (``shared``, ``minibatch``,
                   ``set_value``, ``update_shared``, ``clone``, test value).
``minibatches``    aligned Minibatch variables of several arrays, one Op.
``align_minibatches``  restart the streams of Minibatch variables together.
``generator``      a variable that pulls the next item of a Python generator
                   on every evaluation (PyMC3's ``pm.generator``).
``MinibatchOp``    the Op: ``(state, data_0, ...) -> (state + 1, batch_0, ...)``.
``SourceOp``       the same draw when some data are read through a
                   ``mbcore.Source`` (a ``.npy`` path, an h5py dataset): the Op
                   holds the sources and gathers in Python.

The modules: ``_op`` (the Op, its gradient), ``_ccode`` and
``minibatch_op.c`` (its C implementation), ``_variables`` (Minibatch,
minibatches, align_minibatches), ``_generator`` (the generator variable).

How the stream works
--------------------
The Op holds no state.  Its inputs are an int64 scalar *state* (the step of
mbcore's counter-based streams) and the data; its outputs are ``state + 1``
and the batches.  The state is a shared variable whose ``default_update`` is
the Op's first output, the way theano's random streams carry their
generator, so every call of a compiled function that contains the variable
draws the next batch, ``theano.function(..., no_default_updates=True)``
draws the same batch every call, and Theano's rewrites (merging equal nodes,
folding constants) cannot freeze a stream or merge two: a node's batch is a
pure function of its inputs.

Batch ``t`` is exactly ``mbcore.Minibatch(data, batch_size,
random_seed=seed).draw(t)``: the adapter needs one object of the core,
``mbcore.BatchSpec``, which parses the grammar, checks the data, the step
and the state, and draws batch ``t`` of all the arrays in one kernel call.
A state (``state_dict``) is in the core's format, so it loads into
``mbcore.Minibatch`` and back.
"""
from .._theano_compat import import_theano

import_theano()

from ._generator import (GeneratorExhausted, GeneratorOp, GeneratorVariable,  # noqa: E402
                         generator)
from ._op import MinibatchIndices, MinibatchOp  # noqa: E402
from ._source_op import SourceOp  # noqa: E402
from ._variables import Minibatch, align_minibatches, minibatches  # noqa: E402

__all__ = ["Minibatch", "minibatches", "generator", "align_minibatches", "MinibatchOp",
           "SourceOp", "MinibatchIndices", "GeneratorOp", "GeneratorVariable",
           "GeneratorExhausted"]
