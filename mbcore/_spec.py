"""Parsing of PyMC3's ``batch_size`` and ``in_memory_size`` grammars.

Everything here runs once, at construction; the result (an ``AxisPlan`` per
axis of the stored data) is what the kernels' ``Sampler`` is built from.
"""
import operator
from typing import NamedTuple, Optional

import numpy as np

from ._kernels._gather import MAX_BATCH_INDICES

__all__ = ["AxisPlan", "parse_batch_size", "parse_in_memory_size", "seed_key",
           "check_data", "check_casting"]


class AxisPlan(NamedTuple):
    """How one axis of the stored data is read.

    ``size`` is the batch size of a sampled axis, None for an axis taken whole;
    ``seed`` the seed of its stream (None when whole).
    """
    size: Optional[int]
    seed: object


def _as_size(value, what, spec):
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what} must be an int, got {value!r} in batch_size={spec!r}")
    try:
        size = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{what} must be an int, got {type(value).__name__} {value!r} "
            f"in batch_size={spec!r}") from None
    if size <= 0:
        raise ValueError(f"{what} must be positive, got {size} in batch_size={spec!r}")
    if size > MAX_BATCH_INDICES:
        raise ValueError(f"{what} must be at most 2**31 ({MAX_BATCH_INDICES}), got {size} "
                         f"in batch_size={spec!r}")
    return size


def _check_seed(seed, what):
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(
            f"{what} must be an int or a numpy.random.SeedSequence, got "
            f"{type(seed).__name__} {seed!r}")
    if seed < 0:
        raise ValueError(f"{what} must be non-negative, got {seed}")
    return int(seed)


def seed_key(seed):
    """The 128-bit Philox key (two uint64 as ints) of a seed.

    ``SeedSequence(seed).generate_state(2, uint64)``: NumPy's published
    hashing of a seed, so equal seeds give equal keys and nearby seeds give
    unrelated ones.
    """
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    k = ss.generate_state(2, np.uint64)
    return int(k[0]), int(k[1])


def parse_batch_size(batch_size, ndim, random_seed):
    """Expand a PyMC3 ``batch_size`` into one ``AxisPlan`` per axis.

    Grammar: an int (axis 0 sampled, the rest whole), or a list/tuple of
    ``int | (size, seed) | None | Ellipsis`` with at most one Ellipsis, which
    stands for as many whole axes as needed.  Axes after the listed ones are
    taken whole.
    """
    random_seed = _check_seed(random_seed, "random_seed")
    if isinstance(batch_size, (list, tuple)):
        spec = list(batch_size)
    elif batch_size is None or batch_size is Ellipsis:
        raise ValueError(f"batch_size must sample at least one axis, got {batch_size!r}")
    else:
        spec = [_as_size(batch_size, "batch_size", batch_size)]
    n_ellipsis = sum(1 for t in spec if t is Ellipsis)
    if n_ellipsis > 1:
        raise ValueError(f"batch_size may hold at most one Ellipsis, got {batch_size!r}")
    listed = len(spec) - n_ellipsis
    if listed > ndim:
        raise ValueError(
            f"batch_size has {listed} axis entries but the data has ndim={ndim}: "
            f"batch_size={batch_size!r}")
    plans = []
    for t in spec:
        if t is Ellipsis:
            plans.extend([AxisPlan(None, None)] * (ndim - listed))
        elif t is None:
            plans.append(AxisPlan(None, None))
        elif isinstance(t, (tuple, list)):
            if len(t) != 2:
                raise ValueError(
                    f"a (size, seed) entry of batch_size must have 2 items, got {t!r} "
                    f"in batch_size={batch_size!r}")
            plans.append(AxisPlan(_as_size(t[0], "size", batch_size),
                                  _check_seed(t[1], f"seed of batch_size entry {t!r}")))
        else:
            plans.append(AxisPlan(_as_size(t, "size", batch_size), random_seed))
    plans.extend([AxisPlan(None, None)] * (ndim - len(plans)))
    if all(p.size is None for p in plans):
        raise ValueError(f"batch_size must sample at least one axis, got {batch_size!r}")
    return tuple(plans)


def total_size_of(batch_size, plans, shape):
    """PyMC3's ``total_size`` for this spec: the full length of each sampled
    axis, None for a listed whole axis, Ellipsis kept; an int for an int spec."""
    if not isinstance(batch_size, (list, tuple)):
        return shape[0]
    out = []
    axis = 0
    n_listed = len(batch_size) - (1 if Ellipsis in list(batch_size) else 0)
    for t in batch_size:
        if t is Ellipsis:
            out.append(Ellipsis)
            axis += len(shape) - n_listed
        else:
            out.append(shape[axis] if plans[axis].size is not None else None)
            axis += 1
    return out


def parse_in_memory_size(in_memory_size, ndim):
    """Expand a PyMC3 ``in_memory_size`` into a tuple index of basic slices.

    None: everything.  An int k: the first k rows.  A list/tuple of
    ``int | None | slice | Ellipsis``: per axis, an int k meaning the first k
    entries (PyMC3 keeps such an int as a plain index, which drops the axis;
    here it is ``slice(None, k)``, as for the scalar form).
    """
    if in_memory_size is None:
        return ()
    if isinstance(in_memory_size, (list, tuple)):
        items = list(in_memory_size)
    else:
        items = [in_memory_size]
    if sum(1 for i in items if i is Ellipsis) > 1:
        raise ValueError(f"in_memory_size may hold at most one Ellipsis, got {in_memory_size!r}")
    if len(items) - (1 if Ellipsis in items else 0) > ndim:
        raise ValueError(
            f"in_memory_size has more axis entries than the data's ndim={ndim}: "
            f"{in_memory_size!r}")
    index = []
    for i in items:
        if i is Ellipsis or isinstance(i, slice):
            index.append(i)
        elif i is None:
            index.append(slice(None))
        elif isinstance(i, (int, np.integer)) and not isinstance(i, (bool, np.bool_)):
            if i <= 0:
                raise ValueError(f"in_memory_size entries must be positive, got {i} "
                                 f"in in_memory_size={in_memory_size!r}")
            index.append(slice(None, int(i)))
        else:
            raise TypeError(
                f"in_memory_size entries must be int, None, slice or Ellipsis, got "
                f"{type(i).__name__} {i!r} in in_memory_size={in_memory_size!r}")
    return tuple(index)


CASTINGS = ("no", "equiv", "safe", "same_kind", "unsafe")


def check_casting(casting):
    """``casting`` itself: one of NumPy's casting rules."""
    if not isinstance(casting, str) or casting not in CASTINGS:
        raise ValueError(f"casting must be one of {', '.join(map(repr, CASTINGS))}, "
                         f"got {casting!r}")
    return casting


def check_dtype(dtype, what="data"):
    """``dtype`` as a NumPy dtype that batches of ``what`` can have: TypeError
    for what is not a dtype, or a dtype that holds Python objects."""
    try:
        dtype = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"dtype must be a NumPy dtype, got {dtype!r}") from e
    if dtype.hasobject:
        raise TypeError(f"{what} must not hold Python objects, got dtype {dtype}")
    return dtype


def check_data(data, dtype, what="data", casting="unsafe"):
    """The array a Minibatch reads: ``data`` itself when no cast is needed.

    A cast to ``dtype`` follows NumPy's ``casting`` rule (``np.can_cast``);
    a masked array is refused (its mask would be dropped).
    """
    if isinstance(data, np.ma.MaskedArray):
        raise TypeError(
            f"{what} must not be a numpy.ma.MaskedArray (batches would include the "
            f"masked entries), got a masked array of shape {data.shape}: pass "
            f"{what}.filled(value), or {what}.data to ignore the mask")
    if dtype is not None:
        dtype = check_dtype(dtype, what)
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError) as e:
        raise type(e)(f"{what} must be an array or a nested sequence of equal-length "
                      f"sequences of numbers, got {_short(data)}: {e}") from None
    if dtype is not None and arr.dtype != dtype:
        if not np.can_cast(arr.dtype, dtype, casting):
            raise TypeError(
                f"{what} must have a dtype that casts to {dtype}, got {arr.dtype} "
                f"(casting={casting!r}; casting='unsafe' allows any cast)")
        try:
            arr = arr.astype(dtype, casting=casting)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{what} cannot be cast to dtype {dtype}: {e} "
                             f"({what} of dtype {arr.dtype})") from None
    if arr.dtype.hasobject:
        raise TypeError(f"{what} must not hold Python objects, got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{what} must have at least one dimension, got a 0-d array {arr!r}")
    return arr


def _short(value):
    """A repr of value for a message, cut to 80 characters."""
    r = repr(value)
    return f"{type(value).__name__} {r if len(r) <= 80 else r[:77] + '...'}"
