"""The array left in a graph output's cell that the next batch may be drawn
into, for both adapters: Theano and PyTensor hand back a node's last
output unless something else holds it, and drawing into it saves an
allocation a batch."""
import numpy as np


def reusable(value, dtype, shape):
    """``value`` when a batch of this dtype and shape may be drawn into it
    (an ndarray, C-contiguous and writeable), else None."""
    if (isinstance(value, np.ndarray) and value.shape == shape and value.dtype == dtype
            and value.flags.c_contiguous and value.flags.writeable):
        return value
    return None
