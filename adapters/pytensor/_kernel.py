"""mbcore's ``draw_gather`` C function, for the Numba draw's nopython code.

The one place the adapter names mbcore's compiled kernel module (the
adapter otherwise imports only public names of ``mbcore``): the module that
exports the ``draw_gather`` C API, ``draw_group`` (the callable
``BatchSpec.bind`` wraps) and ``_draw_gather_args`` (a Sampler's plan,
scratch size and thread limit).

``draw_gather(plan, src, dst, step, scratch, nthreads)`` (at the address
``DRAW_GATHER``) draws batch
``step`` of one Sampler's plan from ``src`` into the C-contiguous ``dst``;
it is what ``Sampler.draw`` and ``draw_group`` run for each array, so its
batches are the core's.
"""
import ctypes
import functools

from mbcore._kernels import _gather as KERNEL

__all__ = ["DRAW_GATHER", "samplers_of", "draw_gather_args"]


def _capsule_pointer(capsule):
    """The pointer a PyCapsule holds (under the capsule's own name)."""
    get_name = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)(
        ("PyCapsule_GetName", ctypes.pythonapi))
    get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
        ("PyCapsule_GetPointer", ctypes.pythonapi))
    return get_pointer(capsule, get_name(capsule))


# The address of
#   int draw_gather(const mb_plan *p, const char *src, char *dst, uint64_t step,
#                   int64_t *scratch, int nthreads) noexcept nogil
DRAW_GATHER = _capsule_pointer(KERNEL.__pyx_capi__["draw_gather"])


def samplers_of(bound):
    """The Samplers behind ``BatchSpec.bind(...)``'s callable when it is
    ``draw_group`` over them, else None (a mode the kernel's draw does not
    cover alone, such as epoch_end="short")."""
    if isinstance(bound, functools.partial) and bound.func is KERNEL.draw_group:
        return bound.args[0]
    return None


def draw_gather_args(sampler):
    """``(plan address, scratch int64 entries, address of the C int thread
    limit)`` of a Sampler, for ``draw_gather``."""
    return KERNEL._draw_gather_args(sampler)
