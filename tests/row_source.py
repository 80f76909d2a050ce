"""A user's Source for the tests: an array behind the Source contract,
defined outside mbcore as a user's would be."""
import numpy as np

from mbcore import Source


class RowSource(Source):
    """An array behind the Source contract, with a log of its calls."""

    def __init__(self, array, shape=None):
        self.array = np.asarray(array)
        self.shape = tuple(self.array.shape) if shape is None else shape
        self.dtype = self.array.dtype
        self.gathered = []
        self.prefetched = []
        self.closed = False

    def gather(self, indices, out):
        if self.closed:
            raise ValueError("RowSource is closed")
        self.gathered.append(indices)
        batch = self.array
        for axis, ix in enumerate(indices):
            if ix is not None:
                batch = np.take(batch, ix, axis=axis)
        out[...] = batch

    def prefetch(self, indices):
        self.prefetched.append(indices)

    def close(self):
        self.closed = True
