"""Resident-memory growth of drawing batches from a large array.

    python benchmarks/memory.py core [--gib 2] [--batches 200] [--batch 100000]

Prints one JSON line: the RSS right after the data exists, the peak RSS while
a Minibatch is built and draws batches, and the growth between the two (MB).
Run in a fresh process so that the peak belongs to this work alone.
"""
import argparse
import json


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


def run(which, gib, batches, batch):
    import numpy as np

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
    elif which == "adapter":
        from mbcore.adapters.theano import Minibatch
        import theano
        x = Minibatch(data, batch_size=batch)
        f = theano.function([], x)
        for _ in range(batches):
            f()
    elif which == "reference":
        from mbcore.adapters import theano as _adapter  # noqa: F401  (Theano flags)
        import pymc3 as pm
        import theano
        shared = theano.shared(data)       # what pm.Minibatch does: a copy
        ridx = pm.tt_rng().uniform(size=(batch,), low=0, high=n - 1e-10).astype("int64")
        f = theano.function([], shared[ridx])
        for _ in range(batches):
            f()
    else:
        raise ValueError(f"which must be core, numpy, adapter or reference, got {which!r}")
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
