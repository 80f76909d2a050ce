"""Sources: arrays whose rows live outside this process's memory.

A NumPy array (an ``np.memmap`` included) is read by the kernel through its
strides and needs no source.  Anything else that ``Minibatch`` accepts (a
chunked store, a Dask array) is wrapped in a :class:`Source`: the sampler
draws the batch's indices exactly as it would for a NumPy array of the same
shape and seed, and the source gathers those rows into the output.  The
kernels, the sampling modes and the adapters never see where rows come from.
"""
from typing import Optional, Sequence

import numpy as np

__all__ = ["Source"]


class Source:
    """Rows of an array of known ``shape`` and ``dtype``, gathered by index.

    Subclasses set ``shape`` (a tuple of ints, every sampled axis of known
    length) and ``dtype`` (a NumPy dtype), and implement :meth:`gather`.

    Attributes
    ----------
    shape : tuple of int
    dtype : numpy.dtype
    """

    shape: tuple
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def gather(self, indices: Sequence[Optional[np.ndarray]], out: np.ndarray) -> None:
        """Write the rows ``indices`` select into ``out``.

        Parameters
        ----------
        indices : sequence of (ndarray of int64 or None)
            One entry per axis: the positions taken along a sampled axis, in
            batch order (repeats allowed), or None for an axis taken whole.
        out : ndarray
            C-contiguous, of the batch's shape and of dtype ``self.dtype``;
            ``out`` equals ``np.asarray(source)[np.ix_(...)]`` afterwards.
        """
        raise NotImplementedError

    def prefetch(self, indices: Sequence[Optional[np.ndarray]]) -> None:
        """Hint: the rows of a batch that :meth:`gather` will soon be asked
        for.  May start reading them in the background; never required."""

    def close(self) -> None:
        """Release files, caches and background readers."""
