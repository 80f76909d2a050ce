"""What machine a benchmark ran on, and what mbcore's dispatch chose there.

Every table and JSON file that ``make bench`` writes carries this record, so
that a ratio is never read without the CPU it was measured on.
"""
import os
import platform

import numpy as np

import mbcore
from mbcore._kernels import _hooks


def cpu_model():
    """The CPU's model name as the kernel reports it (``/proc/cpuinfo``), with
    its family and model numbers (a VM may report only "AMD EPYC"), or what
    ``platform`` knows elsewhere."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
                if not line.strip():
                    break                       # the first CPU is enough
    except OSError:
        pass
    name = fields.get("model name")
    if not name:
        return platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def usable_cpus():
    """CPUs this process may run on (its affinity mask), not the host's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def describe():
    """A JSON-ready dict: CPU model, host and usable CPU counts, platform,
    NumPy, and mbcore's dispatch state (vector level, thread count, the
    calibrated rules where the kernels report them)."""
    info = {
        "cpu_model": cpu_model(),
        "cpus_host": os.cpu_count(),
        "cpus_usable": usable_cpus(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "mbcore": getattr(mbcore, "__version__", None),
        "simd": _hooks._simd(),
    }
    if hasattr(mbcore, "get_num_threads"):
        info["num_threads"] = mbcore.get_num_threads()
    dispatch = getattr(_hooks, "_dispatch_info", None)
    if dispatch is not None:
        # What the dispatcher measured in this process: the pool's wake time,
        # the GIL round trip, the draw's cost an index, and per class of
        # (source span, row or run size), classes as log2 of bytes, the
        # prefetch distance and the cost a row (cells: single-axis rows,
        # walk_cells: multi-axis runs), and for rows of 16 to 272 bytes, a
        # cell per size (short_cells) and the copy loop measured for them
        # (loops: "moves" or "memcpy").
        d = dispatch()
        for key, value in d.items():
            if isinstance(value, dict) and any(isinstance(k, tuple) for k in value):
                row = "row {} B" if key in ("short_cells", "loops") else "row 2^{}"
                d[key] = {f"span 2^{c[0]} " + row.format(c[1])
                          + (f" {c[2]} sampled axes" if len(c) > 2 else ""):
                          v if isinstance(v, str) else {"ahead": v[0], "ps_a_row": v[1]}
                          for c, v in sorted(value.items())}
        info["dispatch"] = d
    return info

