"""Memory gate (issue #4): a Minibatch over a 2 GiB float64 array grows
resident memory by less than 64 MB while it draws batches.

Each measurement runs benchmarks/memory.py in a fresh process (its peak RSS
is its own); NumPy's take is measured alongside for comparison.
"""
import json
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).with_name("memory.py")
LIMIT_MB = 64


def measure(which, **kw):
    args = [sys.executable, str(SCRIPT), which]
    for k, v in kw.items():
        args += [f"--{k}", str(v)]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(not pathlib.Path("/proc/self/clear_refs").exists(),
                    reason="needs Linux /proc to read peak RSS")
def test_core_memory_growth_under_64mb():
    core = measure("core", gib=2, batches=100)
    numpy = measure("numpy", gib=2, batches=100)
    print(f"2 GiB float64, 100 batches of 1e5: core +{core['growth_mb']} MB, "
          f"numpy take +{numpy['growth_mb']} MB")
    assert core["rss_base_mb"] > 2000, core       # the data really is resident
    assert core["growth_mb"] < LIMIT_MB, core
