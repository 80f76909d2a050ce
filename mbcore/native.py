"""The C entry point of mbcore's draw, for compiled callers.

A compiled caller (the PyTensor adapter's Numba draw, C code of a graph Op)
can run a bound draw without a Python call per batch: ``DRAW_GATHER`` is the
address of the kernel's C function

    int draw_gather(const mb_plan *p, const char *src, char *dst,
                    uint64_t step, int64_t *scratch, int nthreads)

which draws batch ``step`` of one array's plan from ``src`` (the array's
data pointer) into the C-contiguous ``dst``, and ``plans(bound)`` gives, for
each array of a ``BatchSpec.bind(...)`` callable, what that call needs.  The
batches are the core's: ``Sampler.draw`` and ``BatchSpec.draw`` run the same
function on the same plans.
"""
import ctypes
import functools
from typing import List, Optional, Tuple

from ._kernels import _gather

__all__ = ["DRAW_GATHER", "plans"]


def _capsule_pointer(capsule):
    """The pointer a PyCapsule holds (under the capsule's own name)."""
    get_name = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)(
        ("PyCapsule_GetName", ctypes.pythonapi))
    get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
        ("PyCapsule_GetPointer", ctypes.pythonapi))
    return get_pointer(capsule, get_name(capsule))


DRAW_GATHER: int = _capsule_pointer(_gather.__pyx_capi__["draw_gather"])


def plans(bound) -> Optional[List[Tuple[object, int, int, int]]]:
    """For each array drawn by ``bound`` (a ``BatchSpec.bind(...)``
    callable): ``(sampler, plan address, int64 scratch entries, address of
    the C int thread limit)``, valid while ``bound`` lives; None when its
    draw is not ``draw_gather`` of each array's plan alone (a mode such as
    ``epoch_end="short"``, whose short batches are gathered in Python).

    ``sampler.data`` is the array the plan reads and ``sampler.shape`` the
    batch shape it writes.
    """
    if not (isinstance(bound, functools.partial) and bound.func is _gather.draw_group):
        return None
    return [(s,) + tuple(_gather._draw_gather_args(s)) for s in bound.args[0]]
