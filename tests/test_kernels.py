"""The compiled kernels against their slow twins (tests/twins.py).

philox4x64_raw against NumPy's Philox (and Random123's known answers),
draw_indices against the pure-Python Lemire / Fisher-Yates twin, Sampler's
gather against ``data[np.ix_(...)]`` over itemsizes x layouts x ndim x specs.
"""

import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import twins
import mbcore
from mbcore._kernels import _gather, _hooks
from mbcore._kernels._gather import Sampler
from mbcore._kernels._random import draw_indices, philox4x64_raw

M64 = 2 ** 64 - 1
KEYS = [(0, 0), (123, 456), (M64, 2 ** 63), (0x9E3779B97F4A7C15, 1)]

# A fixed, modest profile: deterministic, no example database on disk.
PROFILE = settings(derandomize=True, database=None, deadline=None, max_examples=120,
                   suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------ philox

@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("counter", [
    [0, 0, 0, 0],
    [1, 2, 3, 4],
    [M64 - 2, 5, 7, 0],          # word 0 carries into word 1 on block 3
    [M64 - 1, M64, 9, 0],        # carry into word 2
    [M64, M64, M64, 5],          # carry into word 3
    [M64, M64, M64, M64],        # the 256-bit counter wraps to 0
])
def test_philox_raw_matches_numpy(counter, key):
    got = philox4x64_raw(counter, key, 5)
    assert got.dtype == np.uint64 and got.shape == (20,)
    np.testing.assert_array_equal(got, twins.philox_blocks(counter, key, 5))


def test_philox_raw_carry_is_a_256_bit_increment():
    counter = [M64, M64, 3, 0]
    key = (5, 6)
    got = philox4x64_raw(counter, key, 2)
    after_carry = philox4x64_raw([0, 0, 4, 0], key, 1)
    np.testing.assert_array_equal(got[4:], after_carry)
    assert not np.array_equal(got[:4], got[4:])


@pytest.mark.parametrize("counter, key, expected", [
    # Random123 kat_vectors, philox4x64 10 rounds.
    ([0, 0, 0, 0], [0, 0],
     [0x16554d9eca36314c, 0xdb20fe9d672d0fdc, 0xd7e772cee186176b, 0x7e68b68aec7ba23b]),
    ([M64] * 4, [M64, M64],
     [0x87b092c3013fe90b, 0x438c3c67be8d0224, 0x9cc7d7c69cd777b6, 0xa09caebf594f0ba0]),
    ([0x243f6a8885a308d3, 0x13198a2e03707344, 0xa4093822299f31d0, 0x082efa98ec4e6c89],
     [0x452821e638d01377, 0xbe5466cf34e90c6c],
     [0xa528f45403e61d95, 0x38c72dbd566e9788, 0xa5a1610e72fd18b5, 0x57bd43b5e52b7fe6]),
])
def test_philox_known_answers(counter, key, expected):
    np.testing.assert_array_equal(philox4x64_raw(counter, key, 1),
                                  np.array(expected, dtype=np.uint64))


def test_philox_zero_blocks():
    assert philox4x64_raw([1, 2, 3, 4], (1, 2), 0).shape == (0,)


# ------------------------------------------------------------------ draw_indices

# 2**31 + 1, 2**31 + 11, 2**62 + 1, 2**62 + 3: Lemire rejects a quarter to a
# half of the draws, so the replacement draws are exercised.
NS = [1, 2, 3, 7, 1000, 2 ** 31 + 1, 2 ** 31 + 11, 2 ** 32 - 2, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1,
      2 ** 32 + 3, 2 ** 33 + 5, 2 ** 62 + 1, 2 ** 62 + 3, 2 ** 63 - 2, 2 ** 63 - 1]


@pytest.mark.parametrize("replace", [True, False], ids=["replace", "noreplace"])
@pytest.mark.parametrize("n", NS)
def test_draw_indices_matches_twin(n, replace):
    m = min(n, 37)
    for key, sid, step in [((123, 456), 0, 0), ((M64, 7), 3, 2 ** 64 - 1),
                           ((1, 0), 63, 12345)]:
        got = draw_indices(key, sid, step, n, m, replace)
        assert got.dtype == np.int64 and got.shape == (m,)
        np.testing.assert_array_equal(got, twins.twin_draw_indices(key, sid, step, n, m, replace))
        assert ((got >= 0) & (got < n)).all()
        if not replace:
            assert len(set(got.tolist())) == m


def test_draw_indices_noreplace_crosses_32_bit_boundary():
    # n - i falls from 2**32 + 2 to below 2**32 inside one batch: 64-bit draws
    # then 32-bit draws from the same stream (word alignment matters).
    n, m = 2 ** 32 + 2, 9
    for step in range(5):
        np.testing.assert_array_equal(
            draw_indices((9, 9), 1, step, n, m, False),
            twins.twin_draw_indices((9, 9), 1, step, n, m, False))


def test_draw_indices_is_pure_and_keyed():
    a = draw_indices((1, 2), 0, 5, 10 ** 6, 50)
    np.testing.assert_array_equal(a, draw_indices((1, 2), 0, 5, 10 ** 6, 50))
    for other in [draw_indices((1, 3), 0, 5, 10 ** 6, 50),     # key
                  draw_indices((1, 2), 1, 5, 10 ** 6, 50),     # stream id
                  draw_indices((1, 2), 0, 6, 10 ** 6, 50)]:    # step
        assert not np.array_equal(a, other)


def test_draw_indices_prefix_property():
    # Draw i consumes the stream in order, so a shorter batch is a prefix.
    for replace in (True, False):
        long = draw_indices((4, 4), 2, 3, 5000, 300, replace)
        short = draw_indices((4, 4), 2, 3, 5000, 100, replace)
        np.testing.assert_array_equal(long[:100], short)


@pytest.mark.parametrize("n, m", [(1, 1), (5, 5), (5, 2), (64, 1), (64, 64), (100, 60),
                                  (100, 3), (1000, 999), (10 ** 5, 10), (10 ** 5, 4000),
                                  (2 ** 18, 2 ** 17)])
def test_dense_sparse_auto_identical(n, m):
    key = (0xDEADBEEF, 42)
    for step in (0, 1, 2 ** 40):
        dense = draw_indices(key, 2, step, n, m, False, "dense")
        sparse = draw_indices(key, 2, step, n, m, False, "sparse")
        auto = draw_indices(key, 2, step, n, m, False, "auto")
        np.testing.assert_array_equal(dense, sparse)
        np.testing.assert_array_equal(dense, auto)
        assert len(np.unique(dense)) == m
        assert ((dense >= 0) & (dense < n)).all()
        if m <= 50:
            np.testing.assert_array_equal(
                dense, twins.twin_draw_indices(key, 2, step, n, m, False))


def test_noreplace_full_draw_is_a_permutation():
    for method in ("dense", "sparse", "auto"):
        p = draw_indices((3, 1), 0, 7, 500, 500, False, method)
        np.testing.assert_array_equal(np.sort(p), np.arange(500))


def test_draw_indices_m_zero():
    for replace in (True, False):
        assert draw_indices((1, 1), 0, 0, 10, 0, replace).shape == (0,)


def test_draw_indices_rejects_bad_arguments():
    with pytest.raises(ValueError, match="method must be .*'bogus'"):
        draw_indices((1, 1), 0, 0, 10, 2, False, "bogus")
    with pytest.raises(ValueError, match="n must be positive, got 0"):
        draw_indices((1, 1), 0, 0, 0, 2)
    with pytest.raises(ValueError, match="m must be non-negative, got -1"):
        draw_indices((1, 1), 0, 0, 10, -1)
    with pytest.raises(ValueError, match="m must be <= n=10 when replace=False, got 11"):
        draw_indices((1, 1), 0, 0, 10, 11, False)


@pytest.mark.parametrize("n", [1000, 2 ** 31 + 1, 2 ** 32 - 1])
def test_vector_levels_draw_the_twin(n, simd_level):
    # Lengths around the vector paths' 64 (8 blocks) and 128 (16 blocks)
    # draws and a scalar tail after them; at 2**31 + 1 Lemire rejects about
    # half the draws, so the vector path's redraw runs in most blocks.
    for m in [63, 64, 65, 127, 128, 129, 200, 300]:
        for key, sid, step in [((123, 456), 0, 0), ((M64, 7), 3, 2 ** 64 - 1)]:
            np.testing.assert_array_equal(draw_indices(key, sid, step, n, m),
                                          twins.twin_draw_indices(key, sid, step, n, m))


def test_simd_hook_refuses_unknown_levels():
    old = _hooks._simd()
    assert old in ("scalar", "avx2", "avx512")
    with pytest.raises(ValueError, match="level must be one of .* got 'sse9'"):
        _hooks._simd("sse9")
    assert _hooks._simd() == old
    assert _hooks._simd("scalar") == old
    assert _hooks._simd("auto") == "scalar"
    assert _hooks._simd() == old          # auto: the widest level, as at import


def test_one_vector_level_for_every_module():
    # The level is one variable of the process (_kernels/_simd.pyx) that every
    # module's draws read: switched once, the dispatcher measures a drawn
    # index at it (its own draw, compiled into _dispatch), _permute reports
    # it, and the draws of _gather, _random and _permute at it are the twins'.
    from mbcore._kernels import _permute as P
    old = _hooks._simd("auto")
    widest = _hooks._simd()
    levels = ["scalar", "avx2", "avx512"]
    data = np.arange(3000, dtype=np.float64).reshape(1000, 3)
    key = (123, 456)
    try:
        for level in levels[:levels.index(widest) + 1]:
            _hooks._simd(level)
            assert P._simd() == level
            _hooks._forget_calibration()
            s = Sampler(data, [300, None], [key, None], True)
            got = s.draw(5)
            assert set(_hooks._dispatch_info()["draw_ps"]) == {level}
            idx = twins.twin_draw_indices(key, 0, 5, 1000, 300)
            np.testing.assert_array_equal(got, data[idx])
            np.testing.assert_array_equal(draw_indices(key, 0, 5, 1000, 300), idx)
            np.testing.assert_array_equal(
                P.permutation(10 ** 6, key, start=10 ** 6 - 300),
                P.at(10 ** 6, key, np.arange(10 ** 6 - 300, 10 ** 6, dtype=np.uint64))
                .astype(np.int64))
    finally:
        _hooks._simd(old)


_N_STRATEGY = st.one_of(
    st.integers(1, 50),
    st.integers(1, 2 ** 63 - 1),
    st.integers(2 ** 32 - 40, 2 ** 32 + 40),
    st.integers(2 ** 63 - 40, 2 ** 63 - 1),
)


@PROFILE
@given(key=st.tuples(st.integers(0, M64), st.integers(0, M64)),
       sid=st.integers(0, 63), step=st.integers(0, M64), n=_N_STRATEGY,
       m=st.integers(0, 20), replace=st.booleans())
def test_draw_indices_property(key, sid, step, n, m, replace):
    if not replace:
        m = min(m, n)
    got = draw_indices(key, sid, step, n, m, replace)
    np.testing.assert_array_equal(got, twins.twin_draw_indices(key, sid, step, n, m, replace))


# ------------------------------------------------------------------ gather

# The gather sees a dtype only as its itemsize, and an array only as its byte
# strides, so its grid is keyed by itemsize x layout: one dtype per itemsize.
# 1, 2, 4, 8 and 16 bytes have copy loops of their own; 3 and 15 are odd
# sizes (S3, a packed struct); 24 and 32 bytes are short rows (16-byte moves
# or memcpy, as measured; force_all_paths runs both).
# The 8-byte dtype is big-endian, so the batch keeps a non-native byte order.
# test_every_supported_dtype_is_in_the_grid_and_round_trips ties the grid to
# the dtypes a Minibatch takes.
STRUCT15 = np.dtype([("a", "<i4"), ("b", "<f8"), ("c", "S3")])     # 15 bytes, packed
GRID_DTYPES = {
    1: np.dtype(np.int8),
    2: np.dtype(np.uint16),
    3: np.dtype("S3"),
    4: np.dtype(np.float32),
    8: np.dtype(">f8"),
    15: STRUCT15,
    16: np.dtype(np.complex128),
    24: np.dtype("V24"),
    32: np.dtype("V32"),
}
assert all(d.itemsize == k for k, d in GRID_DTYPES.items())


def supported_dtypes():
    """The dtypes a Minibatch takes: NumPy's fixed-size scalar types in both
    byte orders (datetime64 and timedelta64 in ns), and flexible, structured
    and void dtypes."""
    out = []
    for code in np.typecodes["All"]:
        dtype = np.dtype(code + "8[ns]" if code in "Mm" else code)
        if dtype.hasobject or dtype.itemsize == 0:      # object; unsized S, U, V
            continue
        out += [dtype] if dtype.byteorder == "|" else [dtype, dtype.newbyteorder()]
    out += [np.dtype("S3"), np.dtype("U1"), np.dtype("<U2"), np.dtype(">U6"), STRUCT15,
            np.dtype("V24"), np.dtype("V32"), np.dtype([("x", "<f4"), ("y", ">i4")])]
    unique = []
    for dtype in out:            # int64 is l, q, n and p
        if dtype not in unique:
            unique.append(dtype)
    return unique


SHAPES = {1: (9,), 2: (9, 5), 3: (7, 4, 5), 4: (5, 3, 4, 3), 5: (4, 3, 2, 3, 4)}
LAYOUTS = ["C", "F", "T", "sliced", "reversed", "broadcast", "unaligned"]
# PyMC3 batch_size specs, expanded with the twin's own parser.
SPECS = {
    "axis0": {d: [3] for d in SHAPES},
    "last": {d: [Ellipsis, 3] for d in SHAPES},
    "several": {1: [4], 2: [6, 4], 3: [5, None, 4], 4: [4, Ellipsis, 2, 3],
                5: [3, None, 2, Ellipsis, 3]},
}


def random_array(dtype, shape, rng):
    """C-contiguous array of ``shape`` with random bytes (valid bools)."""
    if dtype == np.dtype(bool):
        return rng.random(shape) < 0.5
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = rng.integers(0, 256, size=nbytes, dtype=np.uint8)
    return raw.view(dtype).reshape(shape)


def make_data(dtype, shape, layout, rng):
    """An array of ``shape`` and ``dtype`` in the given memory layout."""
    ndim = len(shape)
    if layout == "C":
        a = random_array(dtype, shape, rng)
    elif layout == "F":
        a = np.asfortranarray(random_array(dtype, shape, rng))
    elif layout == "T":
        a = random_array(dtype, shape[::-1], rng).T
    elif layout == "sliced":        # a[::2, 1:, 1:, ...]
        big = random_array(dtype, (2 * shape[0],) + tuple(s + 1 for s in shape[1:]), rng)
        a = big[(slice(None, None, 2),) + (slice(1, None),) * (ndim - 1)]
    elif layout == "reversed":      # a[::-1, ..., ::-1]: negative strides
        a = random_array(dtype, shape, rng)[::-1]
        if ndim > 1:
            a = a[..., ::-1]
    elif layout == "broadcast":     # zero strides on axis 0 (and a middle axis)
        small = list(shape)
        small[0] = 1
        if ndim >= 3:
            small[ndim - 2] = 1
        a = np.broadcast_to(random_array(dtype, tuple(small), rng), shape)
    elif layout == "unaligned":     # data pointer at an odd address
        nbytes = int(np.prod(shape)) * dtype.itemsize
        buf = np.empty(nbytes + 1, np.uint8)[1:]
        buf[...] = random_array(dtype, shape, rng).view(np.uint8).reshape(-1)
        a = buf.view(dtype).reshape(shape)
    else:
        raise AssertionError(layout)
    assert a.shape == tuple(shape) and a.dtype == dtype
    return a


def sampler_for(data, spec, seeds, replace):
    """A Sampler for a PyMC3 spec; sampled axis k gets seed ``seeds[k]``."""
    plan = twins.twin_plan(spec, data.ndim)
    sizes = [None if p is None else p[0] for p in plan]
    keys = [None if p is None else twins.seed_key(seeds[k]) for k, p in enumerate(plan)]
    return Sampler(data, sizes, keys, replace), sizes, keys


@functools.lru_cache(maxsize=None)
def twin_draw(key, sid, step, n, m, replace):
    """twins.twin_draw_indices, computed once per argument tuple (the grid
    draws the same indices for every dtype and layout), read-only."""
    out = twins.twin_draw_indices(key, sid, step, n, m, replace)
    out.flags.writeable = False
    return out


def check_sampler(data, spec, replace, steps=(0, 1, 2 ** 63 + 5), seeds=None):
    seeds = seeds or [1000 + k for k in range(data.ndim)]
    s, sizes, keys = sampler_for(data, spec, seeds, replace)
    expected_shape = tuple(n if m is None else m for n, m in zip(data.shape, sizes))
    assert s.shape == expected_shape
    assert s.dtype == data.dtype
    for step in steps:
        indices = tuple(
            None if m is None else twin_draw(keys[k], k, step, data.shape[k], m, replace)
            for k, m in enumerate(sizes))
        got_indices = s.indices(step)
        assert len(got_indices) == data.ndim
        for g, e in zip(got_indices, indices):
            if e is None:
                assert g is None
            else:
                np.testing.assert_array_equal(g, e)
        twins.assert_same_array(s.draw(step), twins.twin_batch(data, indices))


def check_every_case(cases, check):
    """Run ``check(*case)`` for every case, as bottleneck's tests loop over
    their arrays; fail naming every failing case, from the first one's error."""
    failed = []
    for case in cases:
        try:
            check(*case)
        except Exception as e:
            failed.append((case, e))
    if failed:
        raise AssertionError(
            f"{len(failed)} of {len(cases)} cases fail: "
            f"{', '.join(repr(c) for c, _ in failed)} (above: the error of {failed[0][0]!r})"
        ) from failed[0][1]


# (ndim, spec name) of the grid; on 1-d data the three specs coincide.
GATHER_CASES = []
for _d in SHAPES:
    _seen = set()
    for _spec_name, _by_ndim in SPECS.items():
        _key = repr(twins.twin_plan(_by_ndim[_d], _d))
        if _key not in _seen:
            _seen.add(_key)
            GATHER_CASES.append((_d, _spec_name))


def check_gather_grid(dtype, layout):
    """Every (ndim, spec) case on an array of ``dtype`` in ``layout``:
    with replacement at three steps, without at two."""
    def check(ndim, spec_name):
        rng = np.random.default_rng([ndim, LAYOUTS.index(layout), dtype.itemsize])
        data = make_data(dtype, SHAPES[ndim], layout, rng)
        spec = SPECS[spec_name][ndim]
        check_sampler(data, spec, replace=True)
        check_sampler(data, spec, replace=False, steps=(0, 3))
    check_every_case(GATHER_CASES, check)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("itemsize", list(GRID_DTYPES), ids=lambda k: f"{k}B")
def test_gather_matches_twin(itemsize, layout):
    check_gather_grid(GRID_DTYPES[itemsize], layout)


@pytest.mark.slow
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", supported_dtypes(), ids=str)
def test_gather_matches_twin_for_every_dtype(dtype, layout):
    # The full product: every supported dtype, not one per itemsize.
    check_gather_grid(dtype, layout)


def test_every_supported_dtype_is_in_the_grid_and_round_trips():
    def check(dtype):
        assert dtype.itemsize in GRID_DTYPES, (
            f"no dtype of itemsize {dtype.itemsize} in GRID_DTYPES")
        data = make_data(dtype, (40, 3), "C", np.random.default_rng(dtype.itemsize))
        mb = mbcore.Minibatch(data, 6, random_seed=2)
        assert mb.dtype == dtype and mb.data is data
        batch = next(mb)
        assert batch.dtype == dtype, batch.dtype
        twins.assert_same_array(batch, data[mb.last_indices[0]])
    check_every_case([(d,) for d in supported_dtypes()], check)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_gather_large_batches(layout, simd_level):
    # Batches longer than the fused kernel's 64-index chunk, and index scratch
    # beyond the 512-entry stack buffer (heap path).
    rng = np.random.default_rng(7)
    data = make_data(np.dtype(np.float64), (1000, 3), layout, rng)
    check_sampler(data, [200], True, steps=(0, 1))
    check_sampler(data, [700], False, steps=(0,))
    check_sampler(data, [600, 3], True, steps=(0,))
    data3 = make_data(np.dtype(np.int16), (300, 4, 300), layout, rng)
    check_sampler(data3, [300, None, 300], True, steps=(0,))
    check_sampler(data3, [300, None, 250], False, steps=(0,))


@pytest.mark.parametrize("shape, spec", [
    ((1,), [1]),                 # one row
    ((1,), [5]),                 # one row, drawn repeatedly
    ((1, 4), [3]),
    ((5, 0), [3]),               # empty whole axis
    ((5, 0, 3), [3, None, 2]),
    ((4, 3, 0), [Ellipsis, 2, None]),
    ((6, 1, 1), [2, 1]),
])
def test_gather_tiny_and_empty_shapes(shape, spec):
    data = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)
    check_sampler(data, spec, True, steps=(0, 1))
    plan = twins.twin_plan(spec, len(shape))
    if all(p is None or p[0] <= n for n, p in zip(shape, plan)):
        check_sampler(data, spec, False, steps=(0, 1))


def test_gather_one_row_is_that_row():
    data = np.array([[3.5, -1.0]])
    s, _, _ = sampler_for(data, [4], [0, 0], True)
    np.testing.assert_array_equal(s.draw(0), np.repeat(data, 4, axis=0))


def test_sampler_keeps_reference_and_reads_in_place():
    data = np.arange(10.0)
    s, _, _ = sampler_for(data, [3], [1], True)
    assert s.data is data
    before = s.draw(0)
    data *= 2                      # the Sampler reads the caller's memory
    np.testing.assert_array_equal(s.draw(0), 2 * before)


def test_sampler_rejects_what_the_kernel_relies_on():
    key = twins.seed_key(1)
    with pytest.raises(ValueError, match="sizes and keys need 2 entries"):
        Sampler(np.zeros((3, 3)), [2], [key], True)
    with pytest.raises(ValueError, match="cannot sample 4 of 3 along axis 0"):
        Sampler(np.zeros(3), [4], [key], False)
    with pytest.raises(ValueError, match="cannot sample 2 of 0 along axis 1"):
        Sampler(np.zeros((3, 0)), [None, 2], [None, key], True)
    with pytest.raises(TypeError, match="object"):
        Sampler(np.zeros(3, dtype=object), [2], [key], True)
    with pytest.raises(ValueError, match="sample at least one axis"):
        Sampler(np.zeros(3), [None], [None], True)


def test_sampler_next_advances_step():
    data = np.arange(50)
    s, _, _ = sampler_for(data, [5], [9], True)
    first = [s.next() for _ in range(3)]
    assert s.step == 3
    for t, b in enumerate(first):
        np.testing.assert_array_equal(b, s.draw(t))
    s.step = 1
    np.testing.assert_array_equal(s.next(), first[1])


# ------------------------------------------------------------------ dispatch paths
# The Sampler's batches prefetch the row 0, 4, 8, 16 or 32 positions ahead
# (the distance that copied random rows of the source's size class fastest
# when measured in this process; none from a source of at most 256 KiB; a
# multi-axis walk the run 0, 4, 8, 16 or 32 runs ahead, measured on walks of
# its own), and run on as many threads as their estimated time pays for,
# within set_num_threads' limit (each chunk of a fused batch draws its own
# indices from its start position).  Every path must give the same batch.

@pytest.fixture
def threads():
    """Restore the kernel's thread setting after the test."""
    old = _gather.set_num_threads(2)
    yield _gather.set_num_threads
    _gather.set_num_threads(old)


@pytest.fixture(params=[("on", "moves"), ("off", "moves"), ("on", "memcpy"), ("off", "memcpy")],
                ids="-".join)
def force_all_paths(request):
    """A prefetch mode, a copy loop for rows of 16 to 272 bytes, and every
    batch split (benchmark hook ``_tune``)."""
    prefetch, loop = request.param
    old = _hooks._tune(parallel_min_bytes=0, prefetch=prefetch, parallel_min_ns=0, loop=loop)
    yield
    _hooks._tune(*old)


@pytest.mark.parametrize("shape, calibrated", [
    ((5000, 10), False),     # 400 KB source, 80-byte rows: calibrated
    ((3000, 10), False),     # 240 KB: in the L2, never prefetched
    ((50000, 4), True),      # 1.6 MB, 32-byte rows
    ((50000, 10), True),     # 4 MB, 80-byte rows
    ((20000, 17), True),     # 136-byte rows
    ((300000, 10), True),    # 24 MB
])
@pytest.mark.parametrize("batch", [5, 16, 17, 300])
def test_prefetch_distance_is_measured_and_batches_match(shape, calibrated, batch):
    # Batches shorter than, equal to and longer than the distance.
    data = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    s, _, _ = sampler_for(data, [batch], [7], True)
    ahead = _hooks._prefetch_ahead(s)
    if data.nbytes <= 1 << 18:
        assert ahead == 0
    else:
        assert ahead in (0, 4, 8, 16, 32)
    for step in (0, 3):
        twins.assert_same_array(s.draw(step), data[s.indices(step)[0]])


@pytest.mark.parametrize("ahead", [0, 1, 4, 8, 16, 32, 300])
def test_forced_prefetch_distance_is_used_and_batches_match(ahead):
    data = np.arange(300000 * 10, dtype=np.float64).reshape(300000, 10)
    s, _, _ = sampler_for(data, [257], [7], True)
    old = _hooks._tune(prefetch=ahead)
    try:
        assert _hooks._prefetch_ahead(s) == ahead
        twins.assert_same_array(s.draw(2), data[s.indices(2)[0]])
    finally:
        _hooks._tune(*old)


def test_multi_axis_walk_prefetch_is_measured():
    _hooks._forget_calibration()
    s, _, _ = sampler_for(np.empty((200, 100)), [64, 2], [1, 2], True)       # 160 KB: in the L2
    assert _hooks._prefetch_ahead(s) == 0
    assert _hooks._dispatch_info()["walk_cells"] == {}
    s, _, _ = sampler_for(np.empty((2000, 500)), [64, None], [1, None], True)  # single-axis
    assert _hooks._prefetch_ahead(s) in (0, 4, 8, 16, 32)
    assert _hooks._dispatch_info()["walk_cells"] == {}
    for shape, spec in [((2000, 500), [64, 2]),                  # 8 MB, 16-byte runs
                        ((200, 50, 40), [64, 8, None])]:         # 3.2 MB, 320-byte runs
        data = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
        s, _, _ = sampler_for(data, spec, [1, 2, None][:len(spec)], True)
        ahead = _hooks._prefetch_ahead(s)
        assert ahead in (0, 4, 8, 16, 32)
        twins.assert_same_array(s.draw(1), data[np.ix_(*[
            i if i is not None else np.arange(n) for i, n in zip(s.indices(1), shape)])])
    walks = _hooks._dispatch_info()["walk_cells"]
    assert len(walks) == 2          # one cell a (span, run, sampled axes) class, kept
    assert all(d in (0, 4, 8, 16, 32) and ps > 0 for d, ps in walks.values())
    _hooks._forget_calibration()
    assert _hooks._dispatch_info()["walk_cells"] == {}


@pytest.mark.parametrize("ahead", [0, 1, 4, 8, 16, 32, 300])
def test_forced_walk_prefetch_distance_is_used_and_batches_match(ahead):
    data = np.arange(200 * 50 * 40, dtype=np.float64).reshape(200, 50, 40)
    s, _, _ = sampler_for(data, [33, 9, None], [7, 8, None], True)
    old = _hooks._tune(prefetch=ahead)
    try:
        assert _hooks._prefetch_ahead(s) == ahead
        ix = s.indices(2)
        twins.assert_same_array(s.draw(2), data[np.ix_(ix[0], ix[1], np.arange(40))])
    finally:
        _hooks._tune(*old)


def test_walk_calibration_times_every_distance():
    s, _, _ = sampler_for(np.ones((2000, 500)), [64, 32], [1, 2], True)
    times = _hooks._calibration_times(s)
    assert sorted(times) == [0, 4, 8, 16, 32]
    assert all(t > 0 for t in times.values())


@pytest.mark.parametrize("shape, spec", [
    ((20000, 64), [512]),
    ((1000000, 10), [10000]),
    ((1000000, 1), [32768]),
    ((2000, 500), [1024, 256]),
])
def test_thread_count_follows_the_split_threshold(shape, spec, threads):
    # np.empty: the thread decision reads shapes and strides (and times
    # copies of the source's rows), not values.
    s, _, _ = sampler_for(np.empty(shape), spec, [1, 2], True)
    threads(7)
    old = _hooks._tune(parallel_min_ns=10 ** 15)
    try:
        assert _hooks._batch_threads(s) == 1
        _hooks._tune(parallel_min_ns=0)
        assert _hooks._batch_threads(s) == 7
        _hooks._tune(parallel_min_ns=-1, threads=3)
        assert _hooks._batch_threads(s) == 3
        _hooks._tune(threads=0)
        assert 1 <= _hooks._batch_threads(s) <= 7
        threads(1)
        assert _hooks._batch_threads(s) == 1
    finally:
        _hooks._tune(*old)


def test_small_batches_stay_on_one_thread(threads):
    threads(8)
    s, _, _ = sampler_for(np.empty((100000, 10)), [15], [1], True)
    old = _hooks._tune(parallel_min_ns=0)
    try:
        assert _hooks._batch_threads(s) == 1     # under 16 rows: never split
    finally:
        _hooks._tune(*old)
    s, _, _ = sampler_for(np.empty((100000, 10)), [128], [1], True)
    assert _hooks._batch_threads(s) == 1          # 10 KB out: under 64 KB


def test_tune_rejects_unknown_prefetch_mode():
    old = _hooks._tune()
    with pytest.raises(ValueError, match="prefetch must be one of .*got 'later'"):
        _hooks._tune(prefetch="later")
    assert _hooks._tune() == old
    with pytest.raises(ValueError, match="gil must be one of .*got 'drop'"):
        _hooks._tune(gil="drop")
    assert _hooks._tune() == old
    with pytest.raises(ValueError, match="loop must be one of .* got 'sse'"):
        _hooks._tune(loop="sse")
    assert _hooks._tune() == old


@pytest.mark.parametrize("width", [2, 10, 34])
def test_short_row_loop_is_measured_with_the_rows(width):
    # Rows of 16 to 272 bytes: their cell holds the loop that copied them
    # faster at its first need, the one batches use unless _tune forces one;
    # rows of other sizes are copied by memcpy whatever the cell.
    data = np.zeros((2 * 10 ** 5, width))
    s = Sampler(data, [128, None], [(1, 2), None], True)
    _hooks._forget_calibration()
    assert _hooks._dispatch_info()["loops"] == {}
    loop = _hooks._copy_loop(s)
    assert loop in ("moves", "memcpy")
    assert list(_hooks._dispatch_info()["loops"].values()) == [loop]
    for forced in ("moves", "memcpy"):
        old = _hooks._tune(loop=forced)
        try:
            assert _hooks._copy_loop(s) == forced
        finally:
            _hooks._tune(*old)
    assert _hooks._copy_loop(s) == loop
    wide = Sampler(np.zeros((1000, 40)), [8, None], [(1, 2), None], True)
    old = _hooks._tune(loop="moves")
    try:
        assert _hooks._copy_loop(wide) == "memcpy"      # 320-byte rows
    finally:
        _hooks._tune(*old)


def test_short_rows_have_a_cell_per_size():
    # The copy loop of rows of 16 to 272 bytes is measured for their size:
    # a 272-byte plan does not take the choice of a 300-byte (memcpy only)
    # or 264-byte plan of the same span class, nor they its.
    _hooks._forget_calibration()
    for width in (300, 272, 264):
        s = Sampler(np.zeros((20000, width), dtype=np.uint8), [128, None], [(1, 2), None], True)
        assert _hooks._prefetch_ahead(s) in (0, 4, 8, 16, 32)      # its cell, measured
        assert _hooks._copy_loop(s) in (("memcpy",) if width == 300 else ("moves", "memcpy"))
    info = _hooks._dispatch_info()
    assert list(info["cells"]) == [(23, 9)], info["cells"]            # 300 B: 2^9 class
    assert sorted(info["short_cells"]) == [(23, 264), (23, 272)], info["short_cells"]
    assert sorted(info["loops"]) == [(23, 264), (23, 272)], info["loops"]
    _hooks._forget_calibration()
    assert _hooks._dispatch_info()["short_cells"] == {}


def test_gil_is_kept_only_where_releasing_it_costs_over_a_tenth_of_the_batch():
    _hooks._forget_calibration()
    tiny, _, _ = sampler_for(np.arange(100.0), [4], [1], True)
    big, _, _ = sampler_for(np.arange(10.0 ** 6), [10 ** 5], [1], True)
    assert _hooks._keeps_gil(tiny)         # 4 indices: a few ns of work
    assert not _hooks._keeps_gil(big)      # 1e5 indices: tens of microseconds
    gil_ps = _hooks._dispatch_info()["gil_ps"]
    assert gil_ps and 0 < gil_ps < 10 ** 8  # measured once, kept
    _hooks._forget_calibration()
    assert _hooks._dispatch_info()["gil_ps"] is None
    assert _hooks._keeps_gil(tiny) and not _hooks._keeps_gil(big)   # measured again


@pytest.mark.parametrize("gil", ["keep", "release", "auto"])
@pytest.mark.parametrize("shape, batch", [((100,), 4), ((10 ** 4, 10), 128), ((10 ** 5,), 10 ** 4)])
def test_forced_gil_choice_is_used_and_batches_match(gil, shape, batch):
    data = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    s, _, _ = sampler_for(data, [batch], [3], True)
    auto = _hooks._keeps_gil(s)
    old = _hooks._tune(gil=gil)
    try:
        assert _hooks._keeps_gil(s) == {"keep": True, "release": False, "auto": auto}[gil]
        for step in (0, 5):
            twins.assert_same_array(s.draw(step), data[s.indices(step)[0]])
        idx = np.arange(batch, dtype=np.int64) * 7 % shape[0]
        out = np.empty((batch,) + shape[1:])
        _hooks.copy_rows(data, idx, out)
        twins.assert_same_array(out, data[idx])
    finally:
        _hooks._tune(*old)


@pytest.mark.parametrize("layout", ["C", "F", "sliced", "reversed"])
def test_gather_prefetch_and_two_threads_at_real_sizes(layout, threads):
    # 200000 x 16 float64 (25.6 MB source, 128-byte rows: prefetched),
    # batches of 6000 rows (768 KB: two threads).
    rng = np.random.default_rng(11)
    data = make_data(np.dtype(np.float64), (200000, 16), layout, rng)
    check_sampler(data, [6000], True, steps=(0, 5))
    check_sampler(data, [6001], False, steps=(0,))
    check_sampler(data, [6000, 4], True, steps=(0,))
    s, _, _ = sampler_for(data, [6000], [1, 2], True)
    two = s.draw(3)
    threads(1)
    twins.assert_same_array(s.draw(3), two)


GRID_SUBSET = [(d, n) for d in (1, 2, 3, 5) for n in ("axis0", "several")]


def check_forced_grid(dtype, layout):
    def check(ndim, spec_name):
        rng = np.random.default_rng([ndim, 7, dtype.itemsize])
        data = make_data(dtype, SHAPES[ndim], layout, rng)
        check_sampler(data, SPECS[spec_name][ndim], replace=True, steps=(0, 1))
    check_every_case(GRID_SUBSET, check)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("itemsize", list(GRID_DTYPES), ids=lambda k: f"{k}B")
def test_gather_forced_prefetch_matches_twin(itemsize, layout, force_all_paths):
    check_forced_grid(GRID_DTYPES[itemsize], layout)


@pytest.mark.slow
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", supported_dtypes(), ids=str)
def test_gather_forced_prefetch_matches_twin_for_every_dtype(dtype, layout, force_all_paths):
    check_forced_grid(dtype, layout)


@pytest.mark.parametrize("layout", ["C", "sliced", "reversed"])
def test_gather_every_row_width_of_the_short_row_loops(layout, force_all_paths):
    # uint8 rows of 1 to 300 bytes: every move count of mb_copy_short_rows
    # (16 to 272 bytes) and the widths around it, prefetched or not; "sliced"
    # rows are read from a wider array (stride > row), "reversed" ones with a
    # negative stride.  Rows start at every offset within a cache line.
    for w in range(1, 301):
        full = (np.arange(61 * (w + 5)) % 251).astype(np.uint8).reshape(61, w + 5)
        data = {"C": np.ascontiguousarray(full[:, :w]), "sliced": full[:, 3:3 + w],
                "reversed": np.ascontiguousarray(full[:, :w])[::-1]}[layout]
        s, _, _ = sampler_for(data, [37, None], [w, 1], True)
        got = s.draw(w)
        twins.assert_same_array(got, data[s.indices(w)[0]])


@pytest.mark.parametrize("m", [512, 513, 1023, 1025, 3001])
@pytest.mark.parametrize("n", [5000, 2 ** 31 + 1, 2 ** 33 + 5])
def test_gather_two_thread_split_boundaries(n, m, force_all_paths, threads, simd_level):
    # Two threads claim chunks of ceil(m / 16) positions rounded up to a
    # multiple of 8 (32, 40, 64, 72, 192) from a counter; the last chunk is
    # partial except at 512.  32-bit, rejection-heavy and 64-bit draws.
    if n == 5000:
        data = np.arange(n, dtype=np.int64)
    else:
        data = np.broadcast_to(np.arange(1, dtype=np.int64), (n,))
    s, sizes, keys = sampler_for(data, [m], [77], True)
    expected = twins.twin_draw_indices(keys[0], 0, 4, n, m, True)
    np.testing.assert_array_equal(s.indices(4)[0], expected)
    twins.assert_same_array(s.draw(4), data[expected])
    threads(1)
    twins.assert_same_array(s.draw(4), data[expected])
    if n == 5000:
        check_sampler(data, [m], False, steps=(4,))


def test_set_num_threads_rejects_bad_values(threads):
    top = _gather.MAX_THREADS
    with pytest.raises(ValueError, match=f"n must be 1 to {top}, got {top + 1}"):
        _gather.set_num_threads(top + 1)
    with pytest.raises(ValueError, match=f"n must be 1 to {top}, got 0"):
        _gather.set_num_threads(0)


# ------------------------------------------------------------------ property

_DTYPE_STRATEGY = st.sampled_from(list(GRID_DTYPES.values()))


@st.composite
def gather_cases(draw):
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=ndim, max_size=ndim)))
    sampled = draw(st.lists(st.booleans(), min_size=ndim, max_size=ndim))
    if not any(sampled):
        sampled[draw(st.integers(0, ndim - 1))] = True
    replace = draw(st.booleans())
    spec = []
    for n, s in zip(shape, sampled):
        if not s:
            spec.append(None)
        else:
            hi = 8 if replace else n
            spec.append((draw(st.integers(1, hi)), draw(st.integers(0, 2 ** 32))))
    layout = draw(st.sampled_from(LAYOUTS))
    dtype = draw(_DTYPE_STRATEGY)
    step = draw(st.integers(0, M64))
    return shape, spec, replace, layout, dtype, step


@PROFILE
@given(case=gather_cases(), seed=st.integers(0, 2 ** 32))
def test_gather_property(case, seed):
    shape, spec, replace, layout, dtype, step = case
    data = make_data(dtype, shape, layout, np.random.default_rng(seed))
    sizes = [None if p is None else p[0] for p in spec]
    keys = [None if p is None else twins.seed_key(p[1]) for p in spec]
    s = Sampler(data, sizes, keys, replace)
    indices = tuple(None if p is None else
                    twins.twin_draw_indices(keys[k], k, step, shape[k], p[0], replace)
                    for k, p in enumerate(spec))
    twins.assert_same_array(s.draw(step), twins.twin_batch(data, indices))


# ------------------------------------------------------------------ draw_group
# draw_group draws the indices once for arrays whose sampled axes share their
# streams (mbcore.minibatches) and must give exactly the per-array batches.

GROUP_CASES = {
    # name: (shapes of the arrays, spec, seeds per axis, replace)
    "axis0-fused": ([(5000, 7), (5000,), (5000, 3, 4)], [128], [5, 6, 7], True),
    "axis0-two-threads": ([(50000, 6), (50000,)], [9000], [1, 2], True),
    "axis0-noreplace": ([(3000, 7), (3000,)], [2500], [3, 4], False),
    "two-axes": ([(300, 40), (300, 40, 2)], [64, 16], [8, 9, 10], True),
    "whole-axis-0": ([(30, 300), (30, 300, 2)], [None, 50], [1, 2, 3], True),
}


@pytest.mark.parametrize("name", list(GROUP_CASES))
@pytest.mark.parametrize("layout", ["C", "F", "reversed"])
def test_draw_group_equals_per_array_draws(name, layout, threads):
    shapes, spec, seeds, replace = GROUP_CASES[name]
    rng = np.random.default_rng(len(name))
    arrays = [make_data(np.dtype(dt), shape, layout, rng)
              for dt, shape in zip(["float64", "int16", "float32"], shapes)]
    samplers = [sampler_for(a, spec, seeds, replace)[0] for a in arrays]
    for nthreads in (2, 1):
        threads(nthreads)
        for step in (0, 7, 2 ** 63 + 1):
            got = _gather.draw_group(samplers, step)
            assert isinstance(got, tuple) and len(got) == len(arrays)
            for s, g, a in zip(samplers, got, arrays):
                expected = twins.twin_batch(a, s.indices(step))
                twins.assert_same_array(g, expected)


def test_draw_group_streams_that_differ_are_drawn_one_by_one():
    # Different seeds, or an Ellipsis putting the sampled axis elsewhere:
    # nothing is shared, and every array still gets its own batch.
    X = np.arange(2000.0).reshape(1000, 2)
    y = np.arange(1000.0)
    Z = np.arange(6000.0).reshape(1000, 3, 2)
    a = sampler_for(X, [50], [1], True)[0]
    b = sampler_for(y, [50], [2], True)[0]
    c = sampler_for(Z, [50, Ellipsis, 1], [1, 3, 4], True)[0]
    got = _gather.draw_group([a, b, c], 3)
    for s, g in zip((a, b, c), got):
        twins.assert_same_array(g, s.draw(3))
    assert not np.array_equal(got[0][:, 0] / 2, got[1])


def test_draw_group_out_and_errors():
    X = np.arange(200.0).reshape(100, 2)
    y = np.arange(100, dtype=np.int64)
    s = [sampler_for(a, [10], [5], True)[0] for a in (X, y)]
    outs = (np.empty((10, 2)), np.empty(10, np.int64))
    got = _gather.draw_group(s, 2, outs)
    assert got[0] is outs[0] and got[1] is outs[1]
    twins.assert_same_array(outs[1], y[s[1].indices(2)[0]])
    before = outs[1].copy()
    with pytest.raises(ValueError, match="out must be a writeable C-contiguous array"):
        _gather.draw_group(s, 3, (outs[0], np.empty(11, np.int64)))
    np.testing.assert_array_equal(outs[1], before)     # nothing half-written
    with pytest.raises(ValueError, match="outs must have 2 entries"):
        _gather.draw_group(s, 3, (outs[0],))
    with pytest.raises(TypeError):
        _gather.draw_group([s[0], "not a sampler"], 0)
    assert _gather.draw_group([], 0) == ()


# ------------------------------------------------------------------ benchmark helpers

@pytest.mark.parametrize("shape,m", [
    ((10,), 4),                  # 8-byte rows, GIL kept (a few ns of work)
    ((1000, 7), 600),            # 56-byte rows, GIL released
    ((3000, 1000), 300),         # 8 KB rows from a 24 MB source: the prefetching copy
    ((5, 2, 3), 0),              # no rows
])
def test_copy_rows_equals_fancy_indexing(shape, m):
    src = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    idx = np.random.default_rng(m).integers(0, shape[0], m)
    dst = np.full((m,) + shape[1:], -1.0)
    _hooks.copy_rows(src, idx, dst)
    np.testing.assert_array_equal(dst, src[idx])


@pytest.mark.parametrize("idx,dst_shape,match", [
    (np.array([0, 10]), (2, 3), r"idx must be in \[0, 10\), got values from 0 to 10"),
    (np.array([-1, 2]), (2, 3), r"idx must be in \[0, 10\), got values from -1 to 2"),
    (np.array([1.0]), (1, 3), "idx must be a 1-d int64 array, got .*idx float64"),
    (np.array([[1]]), (1, 3), "idx must be a 1-d int64 array, got .*ndim 2"),
    (np.array([1, 2]), (2, 4),
     r"dst must be a writeable array of shape \(2, 3\) and dtype float64, got \(2, 4\)"),
])
def test_copy_rows_rejects_bad_arguments_and_leaves_dst(idx, dst_shape, match):
    src = np.arange(30.0).reshape(10, 3)
    dst = np.full(dst_shape, -1.0)
    with pytest.raises(ValueError, match=match):
        _hooks.copy_rows(src, idx, dst)
    assert (dst == -1.0).all()


def test_copy_floor_copies_and_checks_the_offset():
    src = np.arange(100.0)
    dst = np.empty(10)
    _hooks.copy_floor(src, dst, 8 * 90)
    np.testing.assert_array_equal(dst, src[90:])
    with pytest.raises(ValueError, match=r"offset must be in \[0, 720\], got 728"):
        _hooks.copy_floor(src, dst, 8 * 91)


def test_walks_of_other_shapes_get_cells_of_their_own():
    # On one array, [2, ..., 10] and [2, None, 20, ..., 10] walk runs of one
    # (span, run) class but jump differently (prefetching 32 runs ahead makes
    # the second 2.5-3x faster and the first no faster): each measures its own.
    _hooks._forget_calibration()
    data = np.zeros((10, 20, 30, 40, 50))
    for spec in ([2, Ellipsis, 10], [2, None, 20, Ellipsis, 10]):
        mb = mbcore.Minibatch(data, spec, random_seed=1)
        next(mb)
    walks = _hooks._dispatch_info()["walk_cells"]
    assert len(walks) == 2, walks
    assert len({k[:2] for k in walks}) == 1        # the same (span, run) class
    _hooks._forget_calibration()
