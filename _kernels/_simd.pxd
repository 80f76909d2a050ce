# cython: language_level=3
"""The vector level of the process: one variable, owned by ``_simd.pyx``,
that every module drawing indices reads (``_philox.pxd``'s ``mb_simd_get``
reaches it through Cython's C-level import), so that switching it switches
every module at once."""

cdef extern from "mb_philox_simd.h":
    enum:
        MB_SIMD_SCALAR
        MB_SIMD_AVX2
        MB_SIMD_AVX512
    int mb_simd_detect() noexcept nogil

cdef int level                   # MB_SIMD_*: the level every draw uses

cdef object simd_switch(new)
