"""What machine a benchmark ran on, and what mbcore's dispatch chose there.

Every table and JSON file that ``make bench`` writes carries this record, so
that a ratio is never read without the CPU it was measured on.
"""
import os
import platform

import numpy as np

import mbcore
from mbcore._kernels import _gather


def cpu_model():
    """The CPU's model name as the kernel reports it (``/proc/cpuinfo``), or
    what ``platform`` knows elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
        "simd": _gather._simd(),
    }
    if hasattr(mbcore, "get_num_threads"):
        info["num_threads"] = mbcore.get_num_threads()
    dispatch = getattr(_gather, "_dispatch", None)
    if dispatch is not None:
        info["dispatch"] = dispatch()
    return info

