# cython: language_level=3
"""The vector level that every draw of the process uses (``_simd.pxd``):
the widest the CPU has, from import on.  The draws do not depend on it."""

level = mb_simd_detect()

cdef list NAMES = ["scalar", "avx2", "avx512"]


cdef object simd_switch(new):
    """The ``_simd`` hook (tests and benchmarks): set the level ("scalar",
    "avx2", "avx512") if ``new`` is not None, refusing one the CPU lacks
    ("auto": the widest it has), and return the old level's name."""
    global level
    old = NAMES[level]
    if new is None:
        return old
    if new == "auto":
        level = mb_simd_detect()
        return old
    if new not in NAMES:
        raise ValueError(f"level must be one of {NAMES + ['auto']} or None, got {new!r}")
    if NAMES.index(new) > mb_simd_detect():
        raise ValueError(f"level {new!r} is not supported here: this CPU has "
                         f"{NAMES[mb_simd_detect()]!r} at most")
    level = NAMES.index(new)
    return old
