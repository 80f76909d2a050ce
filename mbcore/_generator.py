"""``GeneratorAdapter``: a generator whose dtype and shape are known up front."""
import reprlib
import warnings

import numpy as np

__all__ = ["GeneratorAdapter"]

_NUMERIC = "biufc"


def _show(arr):
    """A short text of an item's values for error messages."""
    return np.array2string(arr, threshold=8, edgeitems=3, separator=", ")


def _as_array(item, what):
    try:
        return np.asarray(item)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} is not an array: "
                        f"{type(item).__name__} {reprlib.repr(item)} ({e})") from None


class GeneratorAdapter:
    """Wrap a generator of arrays, inferring dtype and shape from its first item.

    The first item is pulled at construction and kept, so iteration yields
    every item in the original order, the first included.

    Every later item is converted to the first item's dtype and must have its
    ndim (the lengths of the axes may differ from item to item, as a Theano
    variable of this adapter's ``tensortype`` allows).  The conversion never
    changes a value: an item whose values the dtype cannot hold exactly
    (``[0.7, 1.9]`` after an integer first item, ``300`` after an ``int8``
    one, ``0.1`` after a ``float32`` one) raises ValueError naming the item
    and its values, and nothing is yielded for it.

    Parameters
    ----------
    generator : iterator or iterable of array_like
        An iterator (a generator, PyMC3's ``GeneratorAdapter``, any object
        with ``__next__``) or an iterable (a list, say), of numeric items.

    Attributes
    ----------
    test_value : ndarray
        The first item.
    dtype : numpy.dtype
        The first item's dtype: the dtype of every item iteration yields.
    ndim : int
    gen : iterator
        The items after the first.

    Through Theano (``tensortype``, ``make_variable``, and
    ``mbcore.adapters.theano.GeneratorOp`` / ``generator``) float items are
    cast to Theano's ``floatX``, as PyMC3's ``GeneratorAdapter`` does; other
    dtypes are kept.  Iterating the adapter itself yields ``dtype``: the
    core knows no ``floatX``, and imports no Theano.

    Raises
    ------
    TypeError
        ``generator`` is not iterable, or an item is not a numeric array.
    ValueError
        ``generator`` is empty, or an item has another ndim or values the
        dtype cannot hold exactly.

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
        try:
            it = iter(generator)
        except TypeError:
            raise TypeError(f"generator must be an iterator or an iterable of arrays, got "
                            f"{type(generator).__name__} {generator!r}") from None
        try:
            first = next(it)
        except StopIteration:
            raise ValueError(f"generator must yield at least one item, got an empty "
                             f"{type(generator).__name__}") from None
        self.test_value = np.array(_as_array(first, "item 0 of the generator"))
        if self.test_value.dtype.kind not in _NUMERIC:
            if self.test_value.dtype.hasobject:
                raise TypeError(f"generator items must not hold Python objects, got dtype "
                                f"{self.test_value.dtype}")
            raise TypeError(f"generator items must be numeric arrays, got item 0 of dtype "
                            f"{self.test_value.dtype}: {_show(self.test_value)}")
        self.dtype = self.test_value.dtype
        self.ndim = self.test_value.ndim
        self.gen = it
        self._yielded_test_value = False
        self._count = 1              # items pulled from gen, the first included

    def __iter__(self):
        return self

    def __next__(self):
        if not self._yielded_test_value:
            self._yielded_test_value = True
            return self.test_value.copy()
        item = next(self.gen)
        index = self._count
        self._count += 1
        return self.convert(item, f"item {index} of the generator")

    next = __next__

    def convert(self, item, what="item"):
        """``item`` as a new array of ``dtype`` with the same values and this
        adapter's ndim; else TypeError or ValueError naming ``what``."""
        arr = _as_array(item, what)
        if arr.ndim != self.ndim:
            raise ValueError(f"{what} has ndim={arr.ndim} (shape "
                             f"{arr.shape}); the first item's ndim is {self.ndim}: "
                             f"{_show(arr)}")
        if arr.dtype == self.dtype:
            return np.array(arr)
        if arr.dtype.kind not in _NUMERIC:
            raise TypeError(f"{what} has dtype {arr.dtype}, which "
                            f"does not cast to the first item's dtype {self.dtype}: "
                            f"{_show(arr)}")
        if np.can_cast(arr.dtype, self.dtype, "safe") and not (
                arr.dtype.kind in "iu" and self.dtype.kind in "fc"):
            # Exact (NumPy calls int64 -> float64 safe; it rounds past 2**53).
            return arr.astype(self.dtype)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            out = arr.astype(self.dtype)
            same = np.array_equal(out.astype(arr.dtype), arr,
                                  equal_nan=arr.dtype.kind in "fc")
            if same and self.dtype.kind in "iub":
                # The way back can wrap too (2**63 as float64 -> int64 -> float64).
                same = np.array_equal(out, arr)
        if not same:
            raise ValueError(f"{what} does not fit the first item's "
                             f"dtype {self.dtype} (it has dtype {arr.dtype}; the cast would "
                             f"change its values): {_show(arr)}")
        return out

    # -- Theano (PyMC3's GeneratorAdapter API) -------------------------------
    @property
    def tensortype(self):
        """The Theano ``TensorType`` of a variable that yields these items:
        ``floatX`` for float items (PyMC3's rule), else ``dtype``; no axis
        broadcastable.  Imports Theano (configured by mbcore) on first use."""
        from .adapters._theano_compat import import_theano
        theano = import_theano()
        dtype = theano.config.floatX if self.dtype.kind == "f" else str(self.dtype)
        return theano.tensor.TensorType(dtype, (False,) * self.ndim)

    def make_variable(self, gop, name=None):
        """A variable of ``tensortype`` that is the output of ``gop`` (a
        ``mbcore.adapters.theano.GeneratorOp``), with the first item as its
        test value (PyMC3's ``GeneratorAdapter.make_variable``)."""
        from .adapters.theano import GeneratorVariable
        ttype = self.tensortype
        var = GeneratorVariable(gop, ttype, name)
        var.tag.test_value = np.asarray(self.test_value, dtype=ttype.dtype)
        return var
