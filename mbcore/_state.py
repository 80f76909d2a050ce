"""``state_dict()`` / ``load_state_dict()`` of Minibatch and Minibatches.

A state is a small JSON-serialisable dict: the format and its version, the
step, the mode (replace, epochs, epoch_end), the seed's entropy, a
fingerprint of the spec (per axis: the batch size and the 128-bit Philox key
of its stream, or None for a whole axis) and of the data (the shape of each
array: the stream depends on it, not on the values or the dtype), and the
shard ([rank, world], or None: not compared on loading, so that a job
resumes on another number of workers).  Loading checks every field
against the object it is loaded into and only then moves its step, so a
state of another spec, seed, mode or data shape is a ValueError that changes
nothing.  Pickling is separate and unchanged (it carries the data).
"""
import numpy as np

from ._spec import seed_key

__all__ = ["STATE_VERSION", "state_of", "load_state", "make_state", "check_state"]

STATE_VERSION = 1


def _seed_json(seed):
    """The seed's entropy, as JSON: an int, or a SeedSequence's fields."""
    if isinstance(seed, np.random.SeedSequence):
        entropy = seed.entropy
        return {"entropy": [int(e) for e in entropy] if isinstance(entropy, (list, tuple))
                else int(entropy),
                "spawn_key": [int(k) for k in seed.spawn_key], "pool_size": seed.pool_size}
    return int(seed)


def _axes(plans):
    """Per axis of the stored data: [batch size, Philox key as hex] or None."""
    out = []
    for p in plans:
        if p.size is None:
            out.append(None)
        else:
            k0, k1 = seed_key(p.seed)
            out.append([int(p.size), f"{k0:016x}{k1:016x}"])
    return out


def _kind(obj):
    """"mbcore.Minibatches" for a group, "mbcore.Minibatch" otherwise (a
    subclass of Minibatch included)."""
    return "mbcore.Minibatches" if hasattr(obj, "_members") else "mbcore.Minibatch"


def make_state(kind, step, replace, epochs, epoch_end, random_seed, plans, shapes, shard):
    """A state dict from its parts (see the module docstring)."""
    return {"format": kind, "version": STATE_VERSION, "step": int(step),
            "replace": bool(replace), "epochs": bool(epochs), "epoch_end": epoch_end,
            "seed": _seed_json(random_seed), "axes": _axes(plans),
            "arrays": [{"shape": [int(k) for k in shape]} for shape in shapes],
            "shard": None if shard is None else [int(shard[0]), int(shard[1])]}


def state_of(obj, members, step):
    """The state dict of a Minibatch (members = [obj]) or a Minibatches."""
    first = members[0]
    return make_state(_kind(obj), step, first.replace, first.epochs, first.epoch_end,
                      first.random_seed, first._plans, [mb.data.shape for mb in members],
                      first.shard)


def load_state(obj, members, state, seek):
    """Check ``state`` against obj (every field) and then ``seek`` its step."""
    check_state(state, state_of(obj, members, 0))
    seek(state["step"])


def check_state(state, want):
    """Raise unless ``state`` may be loaded where ``state_dict()`` would
    return ``want`` (any step, any shard)."""
    kind = want["format"]
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict from state_dict(), got {type(state).__name__}")
    version = state.get("version")
    if version != STATE_VERSION:
        raise ValueError(f"state has version {version!r}; this mbcore reads version "
                         f"{STATE_VERSION}")
    if state.get("format") != kind:
        raise ValueError(f"state is of {state.get('format')!r}, not of {kind!r}")
    # Not the shard: a state saved by any worker resumes every worker, on
    # any number of workers (the step is the global batch's).
    for field in ("replace", "epochs", "epoch_end", "seed", "axes", "arrays"):
        if state.get(field) != want[field]:
            raise ValueError(
                f"state does not match this {kind.rsplit('.', 1)[1]}: its {field} is "
                f"{state.get(field)!r}, here {want[field]!r}")
    step = state.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < 2 ** 64:
        raise ValueError(f"state's step must be an int in [0, 2**64), got {step!r}")
