# cython: language_level=3
"""Seeded, exactly uniform index samplers on counter-based Philox streams.

The ``nogil`` workers live in ``_philox.pxd`` and ``_samplers.pxd``; these
``def`` functions are thin wrappers for the tests and for reference use.
"""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport uint32_t, uint64_t, int64_t

from _philox cimport philox4x64_10
from _samplers cimport (sample_replace, sample_noreplace, sample_noreplace_dense,
                        sample_noreplace_sparse, noreplace_work_size)

cnp.import_array()


def philox4x64_raw(counter, key, Py_ssize_t nblocks):
    """philox4x64_raw(counter, key, nblocks)

    Raw Philox4x64-10 output for ``nblocks`` consecutive counters.

    Parameters
    ----------
    counter : sequence of 4 uint64
        The first counter; word 0 is incremented (with carry) per block.
    key : sequence of 2 uint64
    nblocks : int

    Returns
    -------
    ndarray of uint64, shape (4 * nblocks,)
    """
    cdef uint64_t c[4]
    cdef uint64_t k0 = int(key[0]), k1 = int(key[1])
    cdef cnp.ndarray[cnp.uint64_t, ndim=1] out = np.empty(4 * nblocks, np.uint64)
    cdef uint64_t *o = <uint64_t *>cnp.PyArray_DATA(out)
    cdef Py_ssize_t b
    cdef int w
    for w in range(4):
        c[w] = int(counter[w])
    with nogil:
        for b in range(nblocks):
            philox4x64_10(c, k0, k1, o + 4 * b)
            c[0] += 1
            if c[0] == 0:
                c[1] += 1
                if c[1] == 0:
                    c[2] += 1
                    if c[2] == 0:
                        c[3] += 1
    return out


def draw_indices(key, uint64_t sid, uint64_t step, int64_t n, int64_t m,
                 bint replace=True, str method="auto"):
    """draw_indices(key, sid, step, n, m, replace=True, method="auto")

    The indices that batch ``step`` of stream ``sid`` samples from an axis of
    length ``n``: ``m`` exactly uniform integers in ``[0, n)`` (distinct when
    ``replace`` is False).  A pure function of its arguments.

    ``method`` picks the replace=False table: "dense" (O(n) memory), "sparse"
    (a hash table, O(m) memory) or "auto" (whichever is smaller).  All three
    return the same indices.

    Returns
    -------
    ndarray of int64, shape (m,)
    """
    if method not in ("auto", "dense", "sparse"):
        raise ValueError(f"method must be 'auto', 'dense' or 'sparse', got {method!r}")
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if m < 0:
        raise ValueError(f"m must be non-negative, got {m}")
    if not replace and m > n:
        raise ValueError(f"m must be <= n={n} when replace=False, got {m}")
    cdef uint64_t k0 = int(key[0]), k1 = int(key[1])
    cdef cnp.ndarray[cnp.int64_t, ndim=1] out = np.empty(m, np.int64)
    cdef int64_t *o = <int64_t *>cnp.PyArray_DATA(out)
    cdef cnp.ndarray[cnp.int64_t, ndim=1] work
    cdef int64_t *w = NULL
    cdef int64_t c
    cdef int code
    if replace:
        with nogil:
            sample_replace(k0, k1, sid, step, n, m, o)
    else:
        cap = 16
        while cap < 2 * m:
            cap <<= 1
        size = {"auto": noreplace_work_size(n, m), "dense": n, "sparse": 2 * cap}[method]
        work = np.empty(size, np.int64)
        w = <int64_t *>cnp.PyArray_DATA(work)
        c = cap
        code = {"auto": 0, "dense": 1, "sparse": 2}[method]
        with nogil:
            if code == 1:
                sample_noreplace_dense(k0, k1, sid, step, n, m, o, w)
            elif code == 2:
                sample_noreplace_sparse(k0, k1, sid, step, n, m, o, w, c)
            else:
                sample_noreplace(k0, k1, sid, step, n, m, o, w)
    return out
