"""Slow, obvious NumPy / pure-Python twins of mbcore's kernels.

Nothing here imports mbcore: every twin is written from the documented
behaviour (the "Stream layout" of ``_kernels/_philox.pxd`` and the samplers of
``_kernels/_samplers.pxd``), so that a test comparing a kernel with its twin
fails when either drifts.

Stream layout (``_philox.pxd``, position-addressed; docs/stream.md):

- Block ``j`` of lane ``c`` of the stream (key, step t, stream id s) is
  ``philox4x64_10(counter=(j, t, s, c), key)``: what NumPy's
  ``Philox(key=key, counter=(j, t, s, c) - 1)`` returns for its first four
  ``random_raw()`` values (NumPy increments the counter before each block).
- 32-bit draw ``p`` (bound n <= 2**32 - 1): half ``p % 8`` of block ``p // 8``
  of lane 0, low half of a word before its high half.
- 64-bit draw ``p`` (bound n >= 2**32): word ``p % 4`` of block ``p // 4`` of
  lane 1.
- Lemire: draw ``x`` gives ``(x * n) >> w`` unless the low w bits of ``x * n``
  are below ``2**w mod n``; then the r-th replacement (r = 0, 1, ...) is word 0
  (its low half for w = 32) of block ``(p, t, s, 2 + r)``.
- replace=True: index k of a batch is ``bounded(p=k, n)``.  replace=False:
  partial Fisher-Yates, ``j = i + bounded(p=i, n - i)``.
"""
import numpy as np

MASK32 = (1 << 32) - 1
MASK64 = (1 << 64) - 1
MASK256 = (1 << 256) - 1


def counter_words(value):
    """A 256-bit int as NumPy's Philox counter: 4 little-endian uint64 words."""
    value &= MASK256
    return np.array([(value >> (64 * w)) & MASK64 for w in range(4)], dtype=np.uint64)


def counter_int(words):
    """Inverse of :func:`counter_words`."""
    return sum(int(w) << (64 * i) for i, w in enumerate(words))


def philox_blocks(counter, key, nblocks):
    """NumPy's Philox4x64-10 output for ``nblocks`` consecutive counters,
    the first being ``counter`` (4 words), with carry across words."""
    first = counter_int(counter)
    bg = np.random.Philox(key=np.array(key, dtype=np.uint64),
                          counter=counter_words(first - 1))
    return bg.random_raw(4 * nblocks).astype(np.uint64)


def philox_block(counter, key):
    """The 4 words (Python ints) of one Philox4x64-10 block."""
    return [int(w) for w in philox_blocks(counter, key, 1)]


class TwinStream:
    """The draws of stream (key, sid, step), addressed by position."""

    def __init__(self, key, sid, step):
        self.key = (int(key[0]), int(key[1]))
        self.sid = int(sid)
        self.step = int(step)
        self._cache = {}

    def block(self, j, lane):
        c = (j, self.step, self.sid, lane)
        if c not in self._cache:
            self._cache[c] = philox_block(list(c), self.key)
        return self._cache[c]

    def draw32(self, p):
        half = p % 8
        word = self.block(p // 8, 0)[half // 2]
        return (word >> (32 * (half % 2))) & MASK32

    def draw64(self, p):
        return self.block(p // 4, 1)[p % 4]

    def retry(self, p, r):
        """Word 0 of block (p, t, s, 2 + r)."""
        return self.block(p, 2 + r)[0]


def lemire32(stream, p, n):
    """Lemire (2019): uniform in [0, n) from 32-bit draw p, 0 < n < 2**32."""
    assert 0 < n <= MASK32
    prod = stream.draw32(p) * n
    threshold = (2 ** 32 - n) % n
    r = 0
    while prod & MASK32 < threshold:
        prod = (stream.retry(p, r) & MASK32) * n
        r += 1
    return prod >> 32


def lemire64(stream, p, n):
    """Lemire (2019): uniform in [0, n) from 64-bit draw p, 0 < n < 2**64."""
    assert 2 ** 32 <= n <= MASK64
    prod = stream.draw64(p) * n
    threshold = (2 ** 64 - n) % n
    r = 0
    while prod & MASK64 < threshold:
        prod = stream.retry(p, r) * n
        r += 1
    return prod >> 64


def bounded(stream, p, n):
    """Exactly uniform in [0, n) from draw p: 32-bit draws while n fits in them."""
    return lemire32(stream, p, n) if n <= MASK32 else lemire64(stream, p, n)


def twin_draw_indices(key, sid, step, n, m, replace=True):
    """The m indices of batch ``step`` of stream ``sid`` on an axis of length n.

    replace=True: ``bounded(k, n)`` for k < m.  replace=False: partial
    Fisher-Yates on a virtual ``a = arange(n)`` (a dict holds moved entries)::

        for i in range(m): j = i + bounded(i, n - i); out[i] = a[j]; a[j] = a[i]
    """
    stream = TwinStream(key, sid, step)
    if replace:
        return np.array([bounded(stream, k, n) for k in range(m)], dtype=np.int64)
    moved = {}
    out = []
    for i in range(m):
        j = i + bounded(stream, i, n - i)
        out.append(moved.get(j, j))
        moved[j] = moved.get(i, i)
    return np.array(out, dtype=np.int64)


def seed_key(seed):
    """Philox key of a seed: NumPy's SeedSequence hashing (as documented in
    ``mbcore._spec.seed_key``)."""
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    k = ss.generate_state(2, np.uint64)
    return int(k[0]), int(k[1])


def twin_plan(batch_size, ndim, random_seed=42):
    """PyMC3's batch_size grammar, spelled out: one (size, seed) or None per axis."""
    if not isinstance(batch_size, (list, tuple)):
        spec = [batch_size]
    else:
        spec = list(batch_size)
    listed = sum(1 for t in spec if t is not Ellipsis)
    plan = []
    for t in spec:
        if t is Ellipsis:
            plan += [None] * (ndim - listed)
        elif t is None:
            plan.append(None)
        elif isinstance(t, (tuple, list)):
            plan.append((int(t[0]), t[1]))
        else:
            plan.append((int(t), random_seed))
    plan += [None] * (ndim - len(plan))
    return plan


def twin_indices(shape, batch_size, step, random_seed=42, replace=True):
    """Per-axis indices of batch ``step`` of a Minibatch (None on whole axes)."""
    plan = twin_plan(batch_size, len(shape), random_seed)
    return tuple(
        None if p is None else
        twin_draw_indices(seed_key(p[1]), axis, step, shape[axis], p[0], replace)
        for axis, p in enumerate(plan))


def twin_batch(data, indices):
    """``data[np.ix_(...)]`` with whole axes (None) as ``np.arange``."""
    data = np.asarray(data)
    full = [np.arange(n) if ix is None else np.asarray(ix, dtype=np.intp)
            for n, ix in zip(data.shape, indices)]
    return data[np.ix_(*full)]


def twin_minibatch(data, batch_size, step, random_seed=42, replace=True):
    """Batch ``step`` of ``Minibatch(data, batch_size, random_seed=..., replace=...)``."""
    data = np.asarray(data)
    return twin_batch(data, twin_indices(data.shape, batch_size, step, random_seed, replace))


def assert_same_array(actual, expected):
    """Same shape, same dtype, same bytes (NaNs and padding included)."""
    assert isinstance(actual, np.ndarray), type(actual)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.tobytes() == np.ascontiguousarray(expected).tobytes()
