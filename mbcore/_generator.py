"""``GeneratorAdapter``: a generator whose dtype and shape are known up front."""
import itertools

import numpy as np

__all__ = ["GeneratorAdapter"]


class GeneratorAdapter:
    """Wrap a generator of arrays, inferring dtype and shape from its first item.

    The first item is pulled at construction and kept, so iteration yields
    every item in the original order, the first included.

    Attributes
    ----------
    test_value : ndarray
        The first item.
    dtype : numpy.dtype
    ndim : int

    Examples
    --------
    >>> import numpy as np
    >>> from mbcore import GeneratorAdapter
    >>> g = GeneratorAdapter(np.full(3, i) for i in range(4))
    >>> g.ndim, str(g.dtype)
    (1, 'int64')
    >>> [int(a[0]) for a in g]
    [0, 1, 2, 3]
    """

    def __init__(self, generator):
        it = iter(generator)
        try:
            first = next(it)
        except StopIteration:
            raise ValueError(f"generator must yield at least one item, got an empty "
                             f"{type(generator).__name__}") from None
        self.test_value = np.asarray(first)
        if self.test_value.dtype.hasobject:
            raise TypeError(f"generator items must not hold Python objects, got dtype "
                            f"{self.test_value.dtype}")
        self.dtype = self.test_value.dtype
        self.ndim = self.test_value.ndim
        self._iter = itertools.chain([self.test_value], it)

    def __iter__(self):
        return self

    def __next__(self):
        return np.asarray(next(self._iter), dtype=self.dtype)

    next = __next__
