"""Compiled kernels of mbcore (installed as ``mbcore._kernels``).

``_gather``: the fused draw-and-gather of a batch, ``Sampler``, and
``BatchIterator``, the C-level base that ``next(mb)`` runs through; under it
``_plan`` (a plan's indices and walk), ``_dispatch`` (the prefetch, thread
and GIL choices, measured at first need), ``_pool`` (the worker pool) and
``_simd`` (the vector level), one each a process.  ``_random``:
counter-based Philox4x64-10 streams and exactly uniform index samplers.
``_permute``: the epoch permutations.  ``_hooks``: what tests and benchmarks
read and force.
"""
