"""Where the time of a batch goes, for one grid case.

    python benchmarks/decompose.py [n w b] [--rounds R]

Times, interleaved in one process (benchmarks/timing.py, interleaved_min), each of:

ours        next(mb) on the case's array
numpy       np.take(data, rng.integers(0, n, b), axis=0)
floor       a contiguous copy of the same bytes
rows 64M    the kernel's copy loop on given indices, sets touching 64 MiB
            of rows before one repeats (cases.py's ``rows``: as cold as ours
            or colder, plus the reading of the index sets)
rows 4M     the same, sets touching 4 MiB: every row has left the 1 MiB L2
            before it comes back, but rows of a source that fits the L3
            stay there (warmer than ours for such sources)
cached      next() of a Minibatch over an array of 1000 rows of the same
            width: drawing and copying with every row in the L1/L2
one row     next() of a batch of one row: the call and the new array
py next     ours behind a Python-level ``__next__`` (the Minibatch before
            BatchIterator): what the C-level path saves

and prints each with its ratio to numpy.  No gather of freshly drawn rows,
called from Python, returns a new batch faster than ``rows`` copies the rows
alone (given their indices and their buffer) in the same cache state.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cases import grid_impls, interleaved_min  # noqa: E402

from mbcore import Minibatch  # noqa: E402


class _PyNext:
    """A Sampler behind a Python-level __next__, as Minibatch was before it
    became a BatchIterator."""

    def __init__(self, sampler):
        self._sampler = sampler

    def __next__(self):
        return self._sampler.next()


def impls_of(case):
    n, w, b = case
    base = grid_impls(case)
    warm = grid_impls(case, rows_cycle=2**22)
    data = base["ours"].__self__._sampler.data
    small = np.full((1000,) + data.shape[1:], 1.5)
    return {
        "ours": base["ours"], "numpy": base["numpy"], "floor": base["floor"],
        "rows 64M": base["rows"], "rows 4M": warm["rows"],
        # Seeds other than ours' (0): rows another callable drew just before
        # would still be in the cache.
        "cached": Minibatch(small, batch_size=b, random_seed=1).__next__,
        "one row": Minibatch(data, batch_size=1, random_seed=2).__next__,
        "py next": _PyNext(Minibatch(data, batch_size=b, random_seed=3)._sampler).__next__,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", nargs="*", type=float, default=[1e5, 10, 128],
                    help="rows n, width w, batch b (default: 1e5 10 128)")
    ap.add_argument("--rounds", type=int, default=3, help="measurements (default 3)")
    args = ap.parse_args(argv)
    if len(args.case) != 3:
        ap.error(f"case must be three numbers n w b, got {args.case}")
    case = tuple(int(v) for v in args.case)
    impls = impls_of(case)
    print(f"case n={case[0]} w={case[1]} b={case[2]}: time per batch (ratio numpy / it)")
    for r in range(args.rounds):
        t = interleaved_min(impls)
        print(f"round {r + 1}: " + " | ".join(
            f"{k} {t[k] * 1e6:.2f} us ({t['numpy'] / t[k]:.2f}x)" for k in impls), flush=True)


if __name__ == "__main__":
    main()
