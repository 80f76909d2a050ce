"""Minibatch(..., epochs=True, epoch_end=...) and minibatches(..., epochs=True).

The stream is checked against mbcore._kernels._permute (whose permutations
tests/test_permute.py checks): batch t of a sampled axis is positions
[t*b, (t+1)*b) of the concatenated epochs ("wrap"), or positions of epoch
t // q ("drop": q = n // b, "short": q = ceil(n / b)).
"""
import doctest
import pathlib
import pickle
import re
import threading

import numpy as np
import pytest

from mbcore import Minibatch, minibatches
from mbcore._kernels import _gather, _hooks
from mbcore._kernels import _permute as P
from mbcore._spec import seed_key

ENDS = ["wrap", "drop", "short"]


def stream(n, seed, epochs, sid=0):
    """The concatenated epochs of an axis."""
    key = seed_key(seed)
    return np.concatenate([P.permutation(n, key, sid=sid, epoch=e) for e in range(epochs)])


def epoch_batches(n, b, end):
    return {"wrap": None, "drop": n // b, "short": -(-n // b)}[end]


# ------------------------------------------------------------------ the stream

@pytest.mark.parametrize("n, b", [(1000, 128), (1000, 1000), (1000, 1), (7, 3), (1, 1)])
@pytest.mark.parametrize("end", ENDS)
def test_every_row_once_an_epoch(n, b, end):
    data = np.arange(n * 2.0).reshape(n, 2)
    mb = Minibatch(data, b, random_seed=11, epochs=True, epoch_end=end)
    perms = [P.permutation(n, seed_key(11), epoch=e) for e in range(4)]
    q = epoch_batches(n, b, end)
    steps = 4 * n // b if end == "wrap" else 4 * q
    rows = []
    for t in range(steps):
        batch = next(mb)
        ix = mb.last_indices[0]
        np.testing.assert_array_equal(batch, data[ix])
        if end == "wrap":
            np.testing.assert_array_equal(ix, np.concatenate(perms)[t * b:(t + 1) * b])
        else:
            e, i = divmod(t, q)
            want = perms[e][i * b:(i + 1) * b]
            np.testing.assert_array_equal(ix, want if end == "short" else want[:b])
            assert len(ix) == (len(want) if end == "short" else b)
        rows.append(ix)
    rows = np.concatenate(rows)
    per_epoch = n if end != "drop" else q * b
    for e in range(len(rows) // per_epoch):
        chunk = rows[e * per_epoch:(e + 1) * per_epoch]
        if end == "drop":
            assert len(np.unique(chunk)) == per_epoch      # n % b rows left out
        else:
            np.testing.assert_array_equal(np.sort(chunk), np.arange(n))


def test_wrap_batch_larger_than_the_axis_spans_epochs():
    n, b = 10, 25
    mb = Minibatch(np.arange(n), b, random_seed=4, epochs=True)
    s = stream(n, 4, 10)
    for t in range(4):
        np.testing.assert_array_equal(next(mb), s[t * b:(t + 1) * b])


@pytest.mark.parametrize("end", ENDS)
def test_epoch_property(end):
    n, b = 100, 32
    mb = Minibatch(np.arange(n), b, random_seed=1, epochs=True, epoch_end=end)
    want = {"wrap": [t * b // n for t in range(12)],
            "drop": [t // 3 for t in range(12)],
            "short": [t // 4 for t in range(12)]}[end]
    got = []
    for _ in range(12):
        got.append(mb.epoch)
        next(mb)
    assert got == want
    mb.seek(10 ** 19)
    assert mb.epoch == {"wrap": 10 ** 19 * b // n, "drop": 10 ** 19 // 3,
                        "short": 10 ** 19 // 4}[end]
    with pytest.raises(AttributeError):
        mb.epoch = 3
    assert Minibatch(np.arange(n), b).epoch is None


def test_draw_seek_and_pickle_follow_the_stream():
    data = np.arange(500.0)
    for end in ENDS:
        mb = Minibatch(data, 64, random_seed=9, epochs=True, epoch_end=end)
        seq = [next(mb) for _ in range(20)]
        for t in (0, 7, 8, 19):
            np.testing.assert_array_equal(mb.draw(t), seq[t])
            np.testing.assert_array_equal(mb.indices(t)[0], data[seq[t].astype(int)])
        mb.seek(7)
        np.testing.assert_array_equal(next(mb), seq[7])
        clone = pickle.loads(pickle.dumps(mb))
        assert clone.step == 8 and clone.epochs and clone.epoch_end == end
        assert type(clone) is type(mb)
        for t in range(8, 20):
            np.testing.assert_array_equal(next(clone), seq[t])


def test_huge_steps():
    mb = Minibatch(np.arange(1000), 128, random_seed=2, epochs=True)
    t = 2 ** 64 - 1
    epoch, off = divmod(t * 128, 1000)
    want = np.concatenate([P.permutation(1000, seed_key(2), epoch=(epoch + k) % 2 ** 64)
                           for k in range(2)])[off:off + 128]
    np.testing.assert_array_equal(mb.draw(t), want)
    for end in ("drop", "short"):
        mb = Minibatch(np.arange(1000), 128, random_seed=2, epochs=True, epoch_end=end)
        q = epoch_batches(1000, 128, end)
        e, i = divmod(t, q)
        got = mb.draw(t)
        np.testing.assert_array_equal(
            got, P.permutation(1000, seed_key(2), epoch=e)[i * 128:i * 128 + len(got)])


def test_threads_split_an_epoch_batch_as_one_thread_draws_it():
    data = np.arange(2e5 * 4).reshape(-1, 4)
    mb = Minibatch(data, 50000, random_seed=6, epochs=True)
    old_threads = _gather.set_num_threads(1)
    try:
        one = [mb.draw(t) for t in range(6)]
        _gather.set_num_threads(2)
        old = _hooks._tune(parallel_min_bytes=0, parallel_min_ns=0)
        try:
            assert _hooks._batch_threads(mb._sampler) == 2
            two = [mb.draw(t) for t in range(6)]
        finally:
            _hooks._tune(*old)
    finally:
        _gather.set_num_threads(old_threads)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
    rows = np.concatenate([x[:, 0] for x in one[:4]]) // 4
    np.testing.assert_array_equal(np.sort(rows), np.arange(200000))


def test_pool_threads_draw_a_short_axis_from_their_own_tables():
    # 100 rows, batches of 10000: each batch spans 100 epochs, split among
    # two pool threads, each computing its epochs' tables.
    data = np.arange(100 * 3).reshape(100, 3)
    mb = Minibatch(data, 10000, random_seed=9, epochs=True)
    old_threads = _gather.set_num_threads(1)
    try:
        one = [mb.draw(t) for t in (0, 1, 7)]
        _gather.set_num_threads(2)
        old = _hooks._tune(parallel_min_bytes=0, parallel_min_ns=0)
        try:
            assert _hooks._batch_threads(mb._sampler) == 2
            two = [mb.draw(t) for t in (0, 1, 7)]
        finally:
            _hooks._tune(*old)
    finally:
        _gather.set_num_threads(old_threads)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
    key = seed_key(9)
    stream = np.concatenate([P.permutation(100, key, epoch=e) for e in range(100, 200)])
    np.testing.assert_array_equal(one[1][:, 0] // 3, stream)


def test_python_threads_sharing_a_short_minibatch_draw_distinct_steps():
    mb = Minibatch(np.arange(1000), 96, random_seed=3, epochs=True, epoch_end="short")
    got = []

    def draw():
        for _ in range(50):
            got.append((len(next(mb)), ))

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert mb.step == 200
    # 11 batches an epoch, the last of 40 rows: 200 steps hold 18 of them.
    assert sorted(got).count((40,)) == 18


# ------------------------------------------------------------------ shapes, axes, groups

def test_multi_axis_spec_permutes_each_axis():
    data = np.arange(30 * 12 * 2.0).reshape(30, 12, 2)
    mb = Minibatch(data, [8, (5, 77)], random_seed=13, epochs=True)
    s0 = stream(30, 13, 4, sid=0)
    s1 = np.concatenate([P.permutation(12, seed_key(77), sid=1, epoch=e) for e in range(4)])
    for t in range(6):
        assert mb.epoch == (t * 8 // 30, t * 5 // 12)
        batch = next(mb)
        i0, i1, whole = mb.last_indices
        assert whole is None
        np.testing.assert_array_equal(i0, s0[t * 8:(t + 1) * 8])
        np.testing.assert_array_equal(i1, s1[t * 5:(t + 1) * 5])
        np.testing.assert_array_equal(batch, data[np.ix_(i0, i1)])


def test_multi_axis_short_batches():
    data = np.arange(10 * 7.0).reshape(10, 7)
    mb = Minibatch(data, [4, 3], random_seed=5, epochs=True, epoch_end="short")
    shapes = []
    for t in range(6):
        batch = next(mb)
        i0, i1 = mb.last_indices
        np.testing.assert_array_equal(batch, data[np.ix_(i0, i1)])
        assert batch.flags.c_contiguous
        shapes.append(batch.shape)
    # axis 0: 4, 4, 2, ...; axis 1: 3, 3, 1, ...
    assert shapes == [(4, 3), (4, 3), (2, 1), (4, 3), (4, 3), (2, 1)]


@pytest.mark.parametrize("end", ENDS)
def test_minibatches_share_one_permutation(end):
    X = np.arange(103 * 3.0).reshape(103, 3)
    y = np.arange(103)
    g = minibatches(X, y, batch_size=20, random_seed=8, epochs=True, epoch_end=end)
    alone = Minibatch(y, 20, random_seed=8, epochs=True, epoch_end=end)
    for t in range(12):
        assert g.epoch == alone.epoch
        xb, yb = next(g)
        np.testing.assert_array_equal(xb[:, 0], 3 * yb)
        np.testing.assert_array_equal(yb, next(alone))
    np.testing.assert_array_equal(g.draw(5)[1], alone.draw(5))
    assert g.last_indices[1][0].tolist() == alone.last_indices[0].tolist()


def test_out_is_filled_for_full_batches_and_unused_for_short_ones():
    data = np.arange(10.0)
    mb = Minibatch(data, 4, random_seed=1, epochs=True, epoch_end="short")
    out = np.full(4, -1.0)
    assert mb.next(out=out) is out
    mb.seek(2)
    short = mb.next(out=out)
    assert short is not out and short.shape == (2,)


def test_set_value_keeps_the_step_and_draws_the_new_length():
    mb = Minibatch(np.arange(100), 10, random_seed=3, epochs=True, epoch_end="drop")
    for _ in range(5):
        next(mb)
    mb.set_value(np.arange(50))
    assert mb.step == 5 and mb.epoch == 1
    np.testing.assert_array_equal(next(mb), P.permutation(50, seed_key(3), epoch=1)[:10])


def test_replace_is_not_used_with_epochs():
    a = Minibatch(np.arange(100), 10, random_seed=3, epochs=True)
    b = Minibatch(np.arange(100), 10, random_seed=3, epochs=True, replace=False)
    assert a.replace is False and b.replace is False
    for _ in range(12):
        np.testing.assert_array_equal(next(a), next(b))
    assert "epochs=True, epoch_end='wrap'" in repr(a)


def test_streams_without_epochs_are_unchanged():
    plain = Minibatch(np.arange(1000), 16, random_seed=5)
    off = Minibatch(np.arange(1000), 16, random_seed=5, epochs=False, epoch_end="wrap")
    for _ in range(5):
        np.testing.assert_array_equal(next(plain), next(off))


# Pins: the epoch stream of a fixed seed, so that a change of construction,
# rounds or key derivation is seen.
PIN_1000_FIRST = [534, 195, 859, 273, 263, 733, 43, 763]
PIN_1000_STEP_1E6 = [548, 213, 782, 692, 282, 959, 241, 928]
PIN_10 = [[2, 8, 0, 7], [9, 1, 5, 3], [6, 4, 9, 1]]     # wraps into epoch 1 at t = 2
PIN_1E12 = [442338269013, 722060278454, 721993257177]


def test_epoch_stream_pins():
    mb = Minibatch(np.arange(1000), 8, random_seed=42, epochs=True)
    assert next(mb).tolist() == PIN_1000_FIRST
    assert mb.draw(10 ** 6).tolist() == PIN_1000_STEP_1E6
    small = Minibatch(np.arange(10), 4, random_seed=42, epochs=True)
    assert [next(small).tolist() for _ in range(3)] == PIN_10
    big = P.at(10 ** 12, seed_key(42), [0, 1, 10 ** 12 - 1])
    assert big.tolist() == PIN_1E12


# ------------------------------------------------------------------ bad input

def test_bad_epochs_arguments():
    X = np.arange(100)
    with pytest.raises(TypeError, match=r"epochs must be a bool, got int 1"):
        Minibatch(X, 10, epochs=1)
    with pytest.raises(ValueError, match=r"epoch_end must be 'wrap', 'drop' or 'short', "
                                         r"got 'cycle'"):
        Minibatch(X, 10, epochs=True, epoch_end="cycle")
    with pytest.raises(ValueError, match=r"epoch_end must be .* got None"):
        Minibatch(X, 10, epochs=True, epoch_end=None)
    with pytest.raises(ValueError, match=r"epoch_end='drop' needs epochs=True, got epochs=False"):
        Minibatch(X, 10, epoch_end="drop")
    for end in ("drop", "short"):
        with pytest.raises(ValueError, match=(
                rf"batch_size must be <= 100 \(the length of axis 0\) with "
                rf"epoch_end='{end}', got 101 \(epoch_end='wrap' lets a batch span epochs\)")):
            Minibatch(X, 101, epochs=True, epoch_end=end)
        with pytest.raises(ValueError, match=r"with epoch_end=.* got 101"):
            minibatches(X, X, batch_size=101, epochs=True, epoch_end=end)
    Minibatch(X, 101, epochs=True)            # wrap: spans epochs
    Minibatch(X, 101, epochs=True, replace=False)


def test_rejected_set_value_in_drop_mode_changes_nothing():
    mb = Minibatch(np.arange(100), 40, random_seed=3, epochs=True, epoch_end="drop")
    next(mb)
    kept = mb.data
    with pytest.raises(ValueError, match=r"batch_size must be <= 30 .* epoch_end='drop', got 40"):
        mb.set_value(np.arange(30))
    assert mb.data is kept and mb.step == 1


# ------------------------------------------------------------------ docs

def test_docs_examples():
    # docs/epochs.md's ```python blocks, in order, as doctests.
    doc = pathlib.Path(__file__).resolve().parent.parent / "docs" / "epochs.md"
    blocks = [b for b in re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)
              if ">>>" in b]
    assert len(blocks) >= 5
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    globs = {}
    for i, block in enumerate(blocks):
        test = parser.get_doctest(block, globs, f"epochs.md block {i}", str(doc), 0)
        runner.run(test, clear_globs=False)
        globs = test.globs
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docs/epochs.md examples failed"
    assert result.attempted > 20


# ------------------------------------------------------------------ more

def test_axis_over_2_to_the_32_runs_on_64_bit_lanes():
    # A broadcast view (zero stride) gives a long axis without the memory.
    n = 2 ** 33 + 5
    data = np.broadcast_to(np.arange(1.0), (n,))
    mb = Minibatch(data, 1000, random_seed=7, epochs=True)
    for t in (0, 1, 2 ** 40):
        np.testing.assert_array_equal(mb.indices(t)[0],
                                      P.batch_rows(n, 1000, t, seed_key(7)))
    assert mb.draw(2 ** 40).shape == (1000,)
    mb.seek(2 ** 40)
    assert mb.epoch == 2 ** 40 * 1000 // n


def test_short_group_pickles_and_replaces_its_arrays():
    X = np.arange(50 * 2.0).reshape(50, 2)
    y = np.arange(50)
    g = minibatches(X, y, batch_size=16, random_seed=4, epochs=True, epoch_end="short")
    for _ in range(3):
        next(g)
    clone = pickle.loads(pickle.dumps(g))
    xb, yb = next(g)
    xc, yc = next(clone)
    assert xb.shape == (2, 2) and yb.shape == (2,)             # 50 = 3 * 16 + 2
    np.testing.assert_array_equal(xb, xc)
    np.testing.assert_array_equal(yb, yc)
    assert "epochs=True, epoch_end='short'" in repr(g)
    assert g.last_indices[1][0].tolist() == yb.tolist()
    g.set_value(X[:40], y[:40])                                  # 40 = 2 * 16 + 8
    assert g.step == 4 and g.epoch == 1                          # batch 1 of epoch 1
    xb, yb = next(g)
    np.testing.assert_array_equal(yb, P.permutation(40, seed_key(4), epoch=1)[16:32])


def test_short_minibatch_last_indices_after_set_value():
    mb = Minibatch(np.arange(10), 4, random_seed=1, epochs=True, epoch_end="short")
    for _ in range(3):
        last = next(mb)                                          # the short one: 2 rows
    mb.set_value(np.arange(10) * 10)
    assert mb.last_indices[0].tolist() == last.tolist()
    assert len(next(mb)) == 4
