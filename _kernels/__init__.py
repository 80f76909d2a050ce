"""Compiled kernels of mbcore (installed as ``mbcore._kernels``).

``_random``: counter-based Philox4x64-10 streams and exactly uniform index
samplers.  ``_gather``: the fused draw-and-gather kernel, ``Sampler``, and
``BatchIterator``, the C-level base that ``next(mb)`` runs through.
"""
