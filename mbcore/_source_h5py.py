"""An HDF5 dataset (h5py) as a row source: chunks read once per batch, cached, read ahead."""
from __future__ import annotations

import pickle
from typing import List

import numpy as np

from ._chunks import DEFAULT_CACHE_BYTES, ChunkedSource, ChunkGrid, check_shape, check_store_dtype
from ._spec import check_casting

__all__ = ["H5Source", "CONTIGUOUS_BLOCK_BYTES"]

# The read unit of a contiguous (unchunked) dataset: runs of whole rows of
# about 64 KiB, so that a batch costs one read per touched run, not per row.
CONTIGUOUS_BLOCK_BYTES = 64 * 2**10


class H5Source(ChunkedSource):
    """Rows of an ``h5py.Dataset``, gathered chunk by chunk.

    Each batch's positions are grouped by the dataset's chunk they fall in
    along every axis; each touched chunk is read once per batch, kept in an
    LRU cache of ``cache_bytes``, and copied to its rows of the batch.  A
    contiguous dataset is read in runs of whole rows of about 64 KiB.
    Unlike ``dataset[list]``, positions may repeat and come in any order.

    Parameters
    ----------
    dataset : h5py.Dataset
        Of an open file; any shape with at least one axis, any fixed-size
        dtype.
    cache_bytes : int, optional
        The chunk cache's capacity in bytes (default 256 MiB; 0: no cache).
    readahead : bool, optional
        Whether ``prefetch`` reads the next batch's chunks on a background
        thread (default True).
    dtype : dtype, optional
        The batches' dtype, when it is not the dataset's: each chunk is cast
        once, as it is read.
    casting : str, optional
        NumPy's rule for that cast (default ``"same_kind"``).

    Raises
    ------
    TypeError
        ``dataset`` is not an ``h5py.Dataset``; its dtype holds Python objects
        (variable-length strings, references) and no ``dtype`` is given, or
        does not cast to ``dtype`` under ``casting``.
    ValueError
        The dataset's file is closed (here or at a gather); the dataset is
        0-d or has no dataspace.

    Examples
    --------
    >>> import h5py, numpy as np
    >>> from mbcore._source_h5py import H5Source
    >>> f = h5py.File("example.h5", "w", driver="core", backing_store=False)
    >>> d = f.create_dataset("x", data=np.arange(4000.0).reshape(1000, 4), chunks=(100, 4))
    >>> src = H5Source(d)
    >>> out = np.empty((3, 4))
    >>> src.gather((np.array([950, 5, 950]), None), out)
    >>> out[:, 0]
    array([3800.,   20., 3800.])
    >>> f.close()
    """

    def __init__(self, dataset, *, cache_bytes: int = DEFAULT_CACHE_BYTES,
                 readahead: bool = True, dtype=None, casting: str = "same_kind"):
        try:
            import h5py
        except ImportError as e:                             # pragma: no cover
            raise ImportError("H5Source needs h5py (pip install 'mbcore-minibatch[data]')") from e
        if not isinstance(dataset, h5py.Dataset):
            raise TypeError(f"dataset must be an h5py.Dataset, got {type(dataset).__name__}")
        if not dataset.id.valid:
            raise ValueError("dataset must belong to an open HDF5 file, got a dataset of a "
                             "closed file")
        super().__init__(cache_bytes, readahead)
        check_casting(casting)
        self.dataset = dataset
        self._file = None                       # a file this source opened itself
        self._path = (dataset.file.filename, dataset.name, dataset.file.driver)
        self.name = f"{dataset.file.filename}:{dataset.name}"
        self.shape = check_shape(dataset.shape, f"HDF5 dataset {self.name}")
        self.dtype = check_store_dtype(dataset.dtype, dtype, casting,
                                       f"HDF5 dataset {self.name}")
        chunks = dataset.chunks
        if chunks is None:
            row = int(np.prod(self.shape[1:], dtype=np.int64)) * dataset.dtype.itemsize
            chunks = (max(1, CONTIGUOUS_BLOCK_BYTES // max(row, 1)),) + self.shape[1:]
        self.chunks = tuple(int(c) for c in chunks)
        self.grid = ChunkGrid(self.shape, self.chunks)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran or the dataset's file was closed."""
        return self._closed or not self.dataset.id.valid

    def _check_open(self) -> None:
        super()._check_open()
        if not self.dataset.id.valid:
            raise ValueError(f"the HDF5 file of dataset {self.name} is closed")

    def close(self) -> None:
        """As :meth:`ChunkedSource.close`; a file the source opened itself
        (when it was loaded from a pickle) is closed too."""
        super().close()
        if self._file is not None:
            self._file.close()
            self._file = None

    def __getstate__(self):
        """The file's name and the dataset's path in it: h5py objects do not
        pickle, so a loaded copy opens the file again, read-only.  A file
        held only in memory (the ``core`` driver) cannot be opened again and
        is refused."""
        filename, dsname, driver = self._path
        if driver == "core":
            raise pickle.PicklingError(
                f"H5Source over {self.name} cannot be pickled: its file is held in memory "
                f"(driver='core') and cannot be opened again")
        state = super().__getstate__()
        state["dataset"] = None
        state["_closed"] = self.closed           # a closed source loads closed
        state["_file"] = None
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if not self._closed:
            import h5py
            filename, dsname, _ = self._path
            self._file = h5py.File(filename, "r")
            self.dataset = self._file[dsname]

    def _read(self, keys) -> List[np.ndarray]:
        chunks = []
        for key in keys:
            chunk = self.dataset[self.grid.chunk_slice(key)]
            chunks.append(chunk if chunk.dtype == self.dtype else chunk.astype(self.dtype))
        return chunks

    def __repr__(self):
        return (f"H5Source({self.name}, shape={self.shape}, dtype={self.dtype}, "
                f"chunks={self.chunks}, cache_bytes={self.cache.capacity})")
