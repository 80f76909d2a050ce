"""Pinned streams: an accidental change of what a seed draws fails loudly.

As numpy's test_generator_mt19937.py does, the sha256 of the first batches
(and of the index streams) for fixed seeds and specs is hard-coded here,
computed from the position-addressed stream layout that docs/stream.md
describes (identical under NumPy 2.x and NumPy 1.23.5).  If one of these
tests fails, the stream changed:
every user's seeded results change with it.  Do not update a pin unless the
change is intended, documented, and announced.

Every pin is checked at every vector level of the draw the CPU has (fixture
``simd_level``): the levels must draw the same streams.
"""
import hashlib

import numpy as np
import pytest

from mbcore import Minibatch, minibatches
from mbcore._kernels._random import draw_indices

pytestmark = pytest.mark.usefixtures("simd_level")


def sha(arrays):
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def index_stream(mb, steps):
    """Indices of every sampled axis of batches 0..steps-1, little-endian int64."""
    return [i.astype("<i8") for t in range(steps) for i in mb.indices(t) if i is not None]


def _d2():
    return np.arange(3000, dtype="<i8").reshape(1000, 3)


def _d3():
    return np.arange(50 * 4 * 30, dtype="<f4").reshape(50, 4, 30)


# name: (make Minibatch, steps, sha of batches, sha of indices, first indices)
PINS = {
    "replace": (
        lambda: Minibatch(_d2(), 16, random_seed=42), 5,
        "15be97567e71a173c6c88dc7243d198c5c87b3a64a5b387917a2241e8223a713",
        "93566e922bbcbfdf9c48c3b48d308300a6e9957051cda4f243caa3ca623ea990",
        [[519, 451, 927, 528, 922, 794, 177, 767]]),
    "noreplace-dense": (
        lambda: Minibatch(_d2(), 16, random_seed=42, replace=False), 5,
        "f0ee8a0c26e6d524f352957b3a0c48b03e22013067582fe505ee8ef5e2b7d6d6",
        "8e749b82d50450e00320177bc810c8cc3d084c50ed2ec59da9edfdd954317f6e",
        [[519, 451, 927, 529, 923, 795, 182, 769]]),
    "noreplace-sparse": (
        lambda: Minibatch(np.arange(10 ** 6, dtype="<i4"), 100, random_seed=2024,
                          replace=False), 5,
        "376704bcc72e800463ae599a7d8ed60389ca097640b137579d088d1d12db0ab4",
        "2cdc1de8c9c1e0fbf80ea3ea7defb39a4694580d3e21d6e711170d8959ec0b3b",
        [[611633, 812098, 398520, 664261, 707100, 119274, 112520, 122497]]),
    "multi-axis": (
        lambda: Minibatch(_d3(), [(4, 7), None, 3], random_seed=1), 5,
        "7d56fc3b0506ec26c74c85b8ae6cea86dc661cfd9e2d417be9751c7f6377693d",
        "911ef45994def07cdf7d5f0492417ae3886ec6df024f89ef50b166fb8c2292ce",
        [[44, 30, 23, 17], [8, 23, 20]]),
    "multi-axis-noreplace-seedsequence": (
        lambda: Minibatch(_d3(), [5, Ellipsis, 6], random_seed=np.random.SeedSequence(77),
                          replace=False), 5,
        "14c6948491ccffdcfa0bf2488f6253f1953c3b028ceb4cdb59c5ec2ffb347058",
        "ea970cb2f3ea7488d3d975235df04de5b135a57edce0c7d06c3d334a5f4b0ffd",
        [[33, 2, 10, 11, 43], [7, 26, 28, 4, 11, 17]]),
}


@pytest.mark.parametrize("name", list(PINS))
def test_pinned_minibatch_stream(name):
    make, steps, batch_sha, index_sha, first = PINS[name]
    mb = make()
    got_first = [i[:len(f)].tolist() for i, f in
                 zip([i for i in mb.indices(0) if i is not None], first)]
    assert got_first == first
    assert sha(index_stream(mb, steps)) == index_sha
    assert sha([next(mb) for _ in range(steps)]) == batch_sha


@pytest.mark.parametrize("replace, index_sha, first", [
    (True, "6c87bd173f2859a14144cfcb5d240aa953fcaa7670b6975088dd60a4cca9689c",
     [4786355359, 4436077676, 6021129833, 4455248558]),
    (False, "d31647709c0afdcc7864af0f20d73c35c6630072df319fe62d4ee028b5554aef",
     [4786355359, 4436077677, 6021129833, 4455248560]),
])
def test_pinned_stream_n_over_2_32(replace, index_sha, first):
    # A zero-stride view of 2**33 + 5 rows: the batches are all zeros, the
    # index stream is what is pinned.
    data = np.broadcast_to(np.zeros(1, "<i8"), (2 ** 33 + 5,))
    mb = Minibatch(data, 1000, random_seed=3, replace=replace)
    assert mb.indices(0)[0][:4].tolist() == first
    assert sha(index_stream(mb, 3)) == index_sha
    for _ in range(3):
        batch = next(mb)
        assert batch.shape == (1000,) and not batch.any()
    assert sha(index_stream(mb, 3)) == sha([mb.indices(t)[0] for t in range(3)])


def test_pinned_minibatches_tuple_stream():
    X = np.arange(2000, dtype="<f8").reshape(1000, 2)
    y = np.arange(1000, dtype="<i8")
    mbs = minibatches(X, y, batch_size=8, random_seed=5)
    got = sha([a for _ in range(4) for a in next(mbs)])
    assert got == "e5aa2e05b56e352c29596518df49deb7c19e549b0903ac5769ba8dcd0649bdaf"


@pytest.mark.parametrize("args, index_sha, first", [
    (((1, 2), 0, 0, 7, 1000, True),
     "db711dec788a25d8dfd1d4490ea7544c2d3a91ad016b7604a86b9096a133a77d", [5, 1, 3]),
    (((1, 2), 1, 3, 2 ** 32 - 1, 1000, True),
     "e54245a72a7186a0a046fec2a1f245ec35632cd3bbe8367395bfafa8ee9d9295",
     [1083884596, 2518026016, 3932750494]),
    (((1, 2), 1, 3, 2 ** 32 + 1, 1000, True),
     "4e2830ca735461c73659a16585fd5cf19cb36479f95af2a6c7e65a491ac89808",
     [3902882282, 2407241894, 756276860]),
    (((1, 2), 2, 9, 2 ** 63 - 1, 1000, True),
     "4c4045748697052c08b0bd0ea870ac1cb40b6b3ed93b673265732819b0db6f02",
     [2929605602571512363, 4205335725681039205, 3945956755846259537]),
    (((3, 4), 0, 1, 2 ** 32 + 200, 1000, False),
     "27943e2876a8b2d8230852a58af361bb676f8676d4d43099c187f97a25bc78e8",
     [3896380925, 563895147, 2706184890]),
    # Lemire rejects about half the 32-bit draws for n = 2**31 + 1 and a
    # quarter of the 64-bit ones for n = 2**62 + 1: the replacement draws
    # are pinned too.
    (((5, 6), 0, 2, 2 ** 31 + 1, 1000, True),
     "68fbdb705ad866df7693a76e85c709423a6eee27be9c94ace80f08dc073f743b",
     [1167906012, 1791861287, 1889837117]),
    (((5, 6), 1, 2, 2 ** 62 + 1, 1000, True),
     "fa81651c54bae48c59c9c187d6508a50c4ac68e3c5b0fd6e5b307d33dbe70d95",
     [2237823142479119545, 4079997446109221152, 2577923963534781202]),
    (((5, 6), 0, 2, 2 ** 31 + 1, 1000, False),
     "bac77c566ba2bc18c3db3e6f4469c328e316e818e9fe240a0500bba84d369261",
     [1167906012, 1791861288, 1889837118]),
], ids=["n7", "n2**32-1", "n2**32+1", "n2**63-1", "noreplace-across-2**32",
        "n2**31+1-rejections", "n2**62+1-rejections", "noreplace-n2**31+1-rejections"])
def test_pinned_draw_indices(args, index_sha, first):
    got = draw_indices(*args)
    assert got[:3].tolist() == first
    assert sha([got.astype("<i8")]) == index_sha
