"""Slow, obvious NumPy / pure-Python twins of mbcore's kernels.

Nothing here imports mbcore: every twin is written from the documented
behaviour (``_kernels/_philox.pxd``, ``_kernels/_samplers.pxd``), so that a
test comparing a kernel with its twin can fail when either drifts.

Stream layout (``_philox.pxd``): block ``j`` of the stream (key, sid, step) is
``philox4x64_10(counter=(j, step, sid, 0), key)``, i.e. what NumPy's
``Philox(key=key, counter=(j, step, sid, 0) - 1)`` returns for its first four
``random_raw()`` values (NumPy increments the counter before each block).
Words are consumed in order; a 32-bit draw takes the low half of a word, then
its high half; a 64-bit draw starts on a word boundary (a pending high half is
skipped).  Bounded draws use Lemire's method: 32-bit while ``n <= 2**32 - 1``,
64-bit above.
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


class TwinStream:
    """The word stream of (key, sid, step), consumed as ``_philox.pxd`` does."""

    def __init__(self, key, sid, step):
        # Consecutive blocks differ only in word 0 of the counter (j), and j
        # never wraps, so one NumPy Philox positioned before block 0 serves
        # the whole stream.
        start = counter_int([0, step, sid, 0])
        self._bg = np.random.Philox(key=np.array(key, dtype=np.uint64),
                                    counter=counter_words(start - 1))
        self._words = []      # the current block, 4 Python ints
        self._pos = 8         # next unread 32-bit half, 0..8

    def _refill(self):
        self._words = [int(w) for w in self._bg.random_raw(4)]
        self._pos = 0

    def next32(self):
        if self._pos >= 8:
            self._refill()
        word = self._words[self._pos // 2]
        half = (word >> (32 * (self._pos % 2))) & MASK32
        self._pos += 1
        return half

    def next64(self):
        w = (self._pos + 1) // 2          # round up to a word boundary
        if w >= 4:
            self._refill()
            w = 0
        self._pos = 2 * w + 2
        return self._words[w]


def lemire32(stream, n):
    """Lemire (2019): uniform in [0, n) from 32-bit words, 0 < n < 2**32."""
    assert 0 < n <= MASK32
    m = stream.next32() * n
    low = m & MASK32
    if low < n:
        threshold = (2 ** 32 - n) % n
        while low < threshold:
            m = stream.next32() * n
            low = m & MASK32
    return m >> 32


def lemire64(stream, n):
    """Lemire (2019): uniform in [0, n) from 64-bit words, 0 < n < 2**64."""
    assert 0 < n <= MASK64
    m = stream.next64() * n
    low = m & MASK64
    if low < n:
        threshold = (2 ** 64 - n) % n
        while low < threshold:
            m = stream.next64() * n
            low = m & MASK64
    return m >> 64


def bounded(stream, n):
    """Exactly uniform in [0, n): 32-bit draws while n fits in them."""
    return lemire32(stream, n) if n <= MASK32 else lemire64(stream, n)


def twin_draw_indices(key, sid, step, n, m, replace=True):
    """The m indices of batch ``step`` of stream ``sid`` on an axis of length n.

    replace=True: m independent ``bounded(n)``.  replace=False: partial
    Fisher-Yates on a virtual ``a = arange(n)`` (a dict holds moved entries)::

        for i in range(m): j = i + bounded(n - i); out[i] = a[j]; a[j] = a[i]
    """
    stream = TwinStream(key, sid, step)
    if replace:
        return np.array([bounded(stream, n) for _ in range(m)], dtype=np.int64)
    moved = {}
    out = []
    for i in range(m):
        j = i + bounded(stream, n - i)
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
