"""Timing callables against each other on a shared, noisy machine.

One helper, used by ``make demo`` and ``make demo-pymc`` (through
examples/demo_report.py), the benchmarks and the ratio gates
(``benchmarks/cases.py``), so that every speed ratio mbcore reports is
measured the same way.
"""
import random
import timeit

__all__ = ["interleaved_min"]


def interleaved_min(impls, rounds=7, target=0.01, calls=None):
    """Best time per call of each callable, measured in interleaved rounds.

    ``impls`` maps names to callables taking no argument.  Each is called
    once to warm up.  Each round then times every callable for about
    ``target`` seconds (or for exactly ``calls`` calls when given), in an
    order shuffled afresh each round (fixed seed); the minimum over rounds
    is kept.  Returns ``{name: seconds per call}``.

    Interleaving means a noisy neighbour slows all of them alike, so their
    ratios hold even when absolute times do not.  The shuffle matters: with
    a fixed order, two identical Minibatches timed in turn, at n=1e5 w=10
    b=128, differed by up to 45%, probably because a callable starts in the
    state the one before left (the caches, the allocator) and the same one
    always paid for it.  Callables that should not share cached data need
    their own seeds too: two Minibatches with one seed draw the same rows,
    and the second to run finds them in the cache.  (Timing one after the
    other, as ``make demo`` once did for its two fits, moved their ratio
    between 0.63x and 1.28x.)
    """
    numbers = {}
    for name, fn in impls.items():
        fn()  # warm up
        if calls is not None:
            numbers[name] = calls
            continue
        t = timeit.Timer(fn)
        k = 1
        while True:
            dt = t.timeit(k)
            if dt >= target / 4 or k >= 10**6:
                break
            k *= 4
        numbers[name] = max(1, int(k * target / max(dt, 1e-9)))
    best = {name: float("inf") for name in impls}
    order = list(impls)
    shuffle = random.Random(0).shuffle
    for _ in range(rounds):
        shuffle(order)
        for name in order:
            n = numbers[name]
            best[name] = min(best[name], timeit.Timer(impls[name]).timeit(n) / n)
    return best
