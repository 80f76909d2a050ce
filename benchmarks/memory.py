"""Resident-memory growth of drawing batches from a large array.

    python benchmarks/memory.py {core,numpy,adapter,reference} [--gib 2] \
        [--batches 200] [--batch 100000]

Prints one JSON line: the RSS right after the data exists, the peak RSS while
a Minibatch is built and draws batches, and the growth between the two (MB).
Run in a fresh process so that the peak belongs to this work alone.
"""
import argparse
import json

import numpy as np


def _status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0  # kB -> MB
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak():
    # Linux: writing 5 to clear_refs resets VmHWM to the current RSS.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _import(which):
    """Import what ``which`` needs before the baseline: the memory a library
    takes at import (Theano and PyMC3: ~200 MB) is not the work measured.
    Theano's first compiled function also costs ~120 MB, whatever the data
    (measured: 120 MB for a 2 GiB array with 0 batches drawn, 1 MB for the
    same array once a function over 1000 rows was compiled first), so a small
    function of the same kind is compiled here too."""
    if which == "core":
        import mbcore  # noqa: F401
    elif which in ("adapter", "reference"):
        import mbcore.adapters.theano  # noqa: F401  (first: supplies the Theano flags)
        import theano
        theano.config.floatX = "float64"   # float data is read as it is, not cast
        _graph(which, np.ones(1000), 10)()
    elif which != "numpy":
        raise ValueError(f"which must be core, numpy, adapter or reference, got {which!r}")


def _graph(which, data, batch):
    """The compiled function of the adapter or the PyMC3 reference graph."""
    import theano
    if which == "adapter":
        from mbcore.adapters.theano import Minibatch
        return theano.function([], Minibatch(data, batch_size=batch))
    import pymc3 as pm
    shared = theano.shared(data)           # what pm.Minibatch does: a copy
    ridx = pm.tt_rng().uniform(size=(batch,), low=0, high=len(data) - 1e-10).astype("int64")
    return theano.function([], shared[ridx])


def run(which, gib, batches, batch):
    _import(which)
    n = int(gib * 2**30) // 8
    data = np.ones(n)                      # every page touched: resident
    _reset_peak()
    base = _status("VmRSS")
    if which == "core":
        from mbcore import Minibatch
        mb = Minibatch(data, batch_size=batch)
        for _ in range(batches):
            next(mb)
    elif which == "numpy":
        rng = np.random.default_rng(0)
        for _ in range(batches):
            np.take(data, rng.integers(0, n, batch))
    else:
        f = _graph(which, data, batch)
        for _ in range(batches):
            f()
    peak = _status("VmHWM")
    return {"which": which, "gib": gib, "batches": batches, "batch": batch,
            "rss_base_mb": round(base, 1), "peak_mb": round(peak, 1),
            "growth_mb": round(peak - base, 1)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("which")
    ap.add_argument("--gib", type=float, default=2.0)
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--batch", type=int, default=100_000)
    args = ap.parse_args(argv)
    print(json.dumps(run(args.which, args.gib, args.batches, args.batch)))


if __name__ == "__main__":
    main()
