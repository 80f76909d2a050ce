"""Sources: arrays whose rows live outside this process's memory.

A NumPy array in memory is read by the kernel through its strides and needs
no source.  Anything else that ``Minibatch`` accepts (a memory-mapped file, a
chunked store, a Dask array) is wrapped in a :class:`Source`: the sampler
draws the batch's indices exactly as it would for a NumPy array of the same
shape and seed, and the source gathers those rows into the output.  The
kernels, the sampling modes and the adapters never see where rows come from.
:func:`as_source` is the one way in: it tells which objects are sources.
"""
import importlib
import math
import numbers
import os
from typing import Optional, Sequence

import numpy as np

from ._spec import check_dtype

__all__ = ["Source", "as_source", "check_source", "SOURCES"]

# The top-level module of an object's type -> "module:class" of its Source,
# imported only when such an object arrives.
SOURCES = {
    "zarr": "mbcore._source_zarr:ZarrSource",
    "h5py": "mbcore._source_h5py:H5Source",
    "dask": "mbcore._source_dask:DaskSource",
}


class Source:
    """Rows of an array of known ``shape`` and ``dtype``, gathered by index.

    Subclasses set ``shape`` (a tuple of ints, every sampled axis of known
    length) and ``dtype`` (a NumPy dtype), and implement :meth:`gather`.

    Attributes
    ----------
    shape : tuple of int
    dtype : numpy.dtype
    closed : bool
        True once the rows cannot be read any more (a closed file); a
        Minibatch refuses a closed source.
    """

    shape: tuple
    dtype: np.dtype
    closed: bool = False

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


def as_source(obj, dtype=None, casting="same_kind", what="data"):
    """The Source that ``Minibatch`` reads ``obj`` through, or None for an
    array in memory (read by the kernel, in place).

    Parameters
    ----------
    obj : object
        A :class:`Source` (returned as it is); a ``str`` or ``os.PathLike``
        naming a ``.npy`` file (opened memory-mapped, read-only); a
        memory-mapped ndarray (``np.memmap``, ``np.load(mmap_mode=...)``);
        an object of a type from a module of ``SOURCES`` (``zarr``,
        ``h5py``, ``dask``: their source module is imported then); anything
        else gives None and is read as an array.
    dtype : dtype, optional
        The batches' dtype.  A source of another dtype is cast batch by
        batch, under ``casting``.
    casting : {'no', 'equiv', 'safe', 'same_kind', 'unsafe'}, default 'same_kind'
        NumPy's rule for that cast, as for arrays.
    what : str
        The argument's name, for messages.

    Raises
    ------
    TypeError
        A dtype that ``casting`` does not allow, a source without a shape.
    ValueError
        A closed source, a shape with an axis of unknown length.
    """
    if isinstance(obj, Source):
        source = obj
    elif isinstance(obj, (str, os.PathLike)):
        from ._memmap import open_npy
        source = open_npy(obj, what)
    elif isinstance(obj, np.ndarray):
        if isinstance(obj, np.ma.MaskedArray):
            return None
        from ._memmap import MemmapSource, mapped_base
        if obj.size == 0 or obj.dtype.hasobject or mapped_base(obj) is None:
            return None
        source = MemmapSource(obj, what)
    else:
        entry = SOURCES.get(type(obj).__module__.partition(".")[0])
        if entry is None:
            return None
        module, _, name = entry.partition(":")
        source = getattr(importlib.import_module(module), name)(obj)
    check_source(source, what)
    if dtype is not None:
        source = cast_source(source, dtype, casting, what)
    return source


def check_source(source, what="data"):
    """``source`` itself, once its shape, dtype and state allow reading it."""
    if getattr(source, "closed", False):
        raise ValueError(f"{what} is closed: {source!r}")
    shape = getattr(source, "shape", None)
    if not isinstance(shape, tuple) or not shape:
        raise TypeError(f"{what} must have a shape with at least one axis (a tuple of "
                        f"ints), got {shape!r}")
    for axis, n in enumerate(shape):
        if n is None or (isinstance(n, numbers.Real) and not isinstance(n, numbers.Integral)
                         and math.isnan(n)):
            raise ValueError(f"{what} has an axis of unknown length: axis {axis} of shape "
                             f"{shape} (compute the chunk sizes first, e.g. dask's "
                             f"compute_chunk_sizes())")
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 0:
            raise TypeError(f"{what} must have a shape of non-negative ints, got {shape!r}")
    dtype = np.dtype(source.dtype)
    if dtype.hasobject:
        raise TypeError(f"{what} must not hold Python objects, got dtype {dtype}")
    return source


def cast_source(source, dtype, casting, what="data"):
    """``source``, or a Source that casts its batches to ``dtype``."""
    dtype = check_dtype(dtype, what)
    if dtype == source.dtype:
        return source
    if not np.can_cast(source.dtype, dtype, casting):
        raise TypeError(
            f"{what} must have a dtype that casts to {dtype}, got {source.dtype} "
            f"(casting={casting!r}; casting='unsafe' allows any cast)")
    return CastSource(source, dtype, casting)


class CastSource(Source):
    """The rows of ``source`` cast to ``dtype`` (under ``casting``), batch by
    batch: the memory of one batch of the source's dtype."""

    def __init__(self, source, dtype, casting):
        self.source = source
        self.shape = tuple(source.shape)
        self.dtype = np.dtype(dtype)
        self.casting = casting

    @property
    def closed(self):
        return getattr(self.source, "closed", False)

    def gather(self, indices, out):
        raw = np.empty(out.shape, self.source.dtype)
        self.source.gather(indices, raw)
        np.copyto(out, raw, casting=self.casting)

    def prefetch(self, indices):
        self.source.prefetch(indices)

    def close(self):
        self.source.close()

    def __repr__(self):
        return f"CastSource({self.source!r}, dtype={self.dtype})"


class ArraySource(Source):
    """An array in memory as a Source: what ``set_value`` of a Minibatch
    over a source turns an array into."""

    def __init__(self, array):
        self.array = array
        self.shape = tuple(array.shape)
        self.dtype = array.dtype

    def gather(self, indices, out):
        batch = self.array
        for axis, ix in enumerate(indices):
            if ix is not None:
                batch = np.take(batch, ix, axis=axis)
        out[...] = batch

    def __repr__(self):
        return f"ArraySource(shape={self.shape}, dtype={self.dtype})"
