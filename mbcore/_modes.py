"""The sampling modes' arithmetic in Python: epoch_end names, the epoch of a
step, the rows of an epoch's short last batch, and a shard's share of it."""
import numpy as np

from ._kernels import _permute
from ._spec import seed_key

__all__ = ["EPOCH_ENDS", "epoch_of", "short_lengths", "shard_span", "short_indices"]


# epoch_end names and the Sampler's epoch modes (_kernels/_permute.pxd).
EPOCH_ENDS = {"wrap": 1, "drop": 2, "short": 3}
_SHORT = EPOCH_ENDS["short"]


def epoch_of(mode, step, axes):
    """The epoch batch ``step`` starts in, for epoch mode ``mode`` (a value
    of EPOCH_ENDS) and the sampled ``axes`` as (axis, n, b): an int, or a
    tuple with one per axis when several are sampled."""
    res = []
    for _, n, b in axes:
        if mode == EPOCH_ENDS["wrap"]:
            res.append(step * b // n)
        elif mode == EPOCH_ENDS["drop"]:
            res.append(step // (n // b))
        else:
            res.append(step // -(-n // b))
    return res[0] if len(res) == 1 else tuple(res)


def short_lengths(step, ndim, axes):
    """With epoch_end="short": per axis of an ``ndim``-d array, the length of
    batch ``step`` (None on whole axes), or None when the batch is full;
    ``axes`` as in ``epoch_of``."""
    lengths = [None] * ndim
    short = False
    for k, n, b in axes:
        left = n - (step % -(-n // b)) * b
        lengths[k] = min(b, left)
        short = short or left < b
    return lengths if short else None


def shard_span(length, shard):
    """Positions ``[rank * length // world, (rank + 1) * length // world)``
    of a global batch of ``length`` entries: the shard's (rank, world) share
    (the slices of all ranks are disjoint and make up ``[0, length)``)."""
    rank, world = shard
    return rank * length // world, (rank + 1) * length // world


def short_indices(indices, step, plans, shape, shard):
    """With epoch_end="short": ``indices`` (a Sampler's for batch ``step`` of
    an array of ``shape`` with the per-axis ``plans``) trimmed to the entries
    the batch holds, or ``indices`` when it is full.  A short batch of
    length L along a sharded first sampled axis gives this shard positions
    ``shard_span(L, shard)`` of the epoch's last batch, drawn here."""
    axes = [(k, shape[k], p.size) for k, p in enumerate(plans) if p.size is not None]
    lengths = short_lengths(step, len(plans), axes)
    if lengths is None:
        return indices
    res = [ix if ix is None else ix[:m] for ix, m in zip(indices, lengths)]
    if shard is not None:
        k, n, b = axes[0]
        lo, hi = shard_span(lengths[k], shard)
        res[k] = _permute.batch_rows(n, b, step, seed_key(plans[k].seed), sid=k, mode="short",
                                     start=lo, count=hi - lo)
    return tuple(res)


def _epoch_mode(epochs, epoch_end):
    """The Sampler's epoch mode (0: no epochs) for Minibatch's arguments."""
    if not isinstance(epochs, (bool, np.bool_)):
        raise TypeError(f"epochs must be a bool, got {type(epochs).__name__} {epochs!r}")
    if not isinstance(epoch_end, str) or epoch_end not in EPOCH_ENDS:
        raise ValueError(f"epoch_end must be 'wrap', 'drop' or 'short', got {epoch_end!r}")
    if not epochs:
        if epoch_end != "wrap":
            raise ValueError(f"epoch_end={epoch_end!r} needs epochs=True, got epochs=False")
        return 0
    return EPOCH_ENDS[epoch_end]


def _check_shard(shard, plans):
    """shard as a (rank, world) tuple of ints, or None; checked against the
    spec (world must divide the first sampled axis' batch size).  Every
    sampling mode shards: the global batch is drawn as one process would
    draw it, and the shard takes its slice of the positions."""
    if shard is None:
        return None
    if (not isinstance(shard, (tuple, list)) or len(shard) != 2
            or any(isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer))
                   for x in shard)):
        raise TypeError(f"shard must be a (rank, world) pair of ints, got {shard!r}")
    rank, world = int(shard[0]), int(shard[1])
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"shard must be (rank, world) with 0 <= rank < world, got {shard!r}")
    axis, size = next((k, p.size) for k, p in enumerate(plans) if p.size is not None)
    if size % world:
        raise ValueError(f"shard={shard!r}: the world size {world} must divide the batch "
                         f"size {size} of axis {axis}")
    return rank, world
