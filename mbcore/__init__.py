"""mbcore: seeded, exactly uniform random minibatches, as fast as memory allows.

Layers
------
``mbcore._kernels``   Cython kernels (nogil): Philox streams, index samplers,
                      the fused draw-and-gather.
``mbcore``            This package: ``Minibatch``, ``minibatches``, plain NumPy;
                      ``Source``, ``as_source``: rows outside memory (files).
``mbcore.adapters``   Thin graph adapters (Theano/PyMC3) over the same core.
"""
from ._batchspec import BatchSpec
from ._data import available_data, get_data
from ._generator import GeneratorAdapter
from ._memmap import MemmapSource
from ._group import Minibatches, minibatches
from ._minibatch import Minibatch
from ._source import Source, as_source
from ._threads import get_num_threads, num_threads, set_num_threads

__all__ = ["Minibatch", "Minibatches", "minibatches", "Source", "as_source", "MemmapSource",
           "BatchSpec", "GeneratorAdapter", "get_data", "available_data", "set_num_threads",
           "get_num_threads", "num_threads"]
__version__ = "0.1.0"
