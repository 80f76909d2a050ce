"""Memory gate: a Minibatch over a 2 GiB float64 array grows resident memory
by less than 64 MB while it draws batches; so does a compiled function of
the Theano adapter (in the PyMC3 venv), whose reference graph copies the
array into a ``theano.shared``.

Each measurement runs benchmarks/memory.py in a fresh process (its peak RSS
is its own); NumPy's take is measured alongside for comparison.
"""
import importlib.util
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


needs_proc = pytest.mark.skipif(not pathlib.Path("/proc/self/clear_refs").exists(),
                                reason="needs Linux /proc to read peak RSS")


def assert_growth_under_limit(which, beside, what):
    """Measure ``which`` and ``beside`` (for comparison) over 2 GiB and 100
    batches of 1e5, print both, and assert ``which`` grows < LIMIT_MB."""
    ours = measure(which, gib=2, batches=100)
    other = measure(beside, gib=2, batches=100)
    print(f"\n2 GiB float64, 100 batches of 1e5 ({what}): {which} +{ours['growth_mb']} MB, "
          f"{beside} +{other['growth_mb']} MB")
    assert ours["rss_base_mb"] > 2000, ours       # the data really is resident
    assert ours["growth_mb"] < LIMIT_MB, ours


@needs_proc
def test_core_memory_growth_under_64mb():
    assert_growth_under_limit("core", "numpy", "next(mb) vs np.take")


@needs_proc
@pytest.mark.skipif(importlib.util.find_spec("theano") is None
                    or importlib.util.find_spec("pymc3") is None,
                    reason="the adapter's memory gate runs in .venv-pymc3 (make test-adapter)")
def test_adapter_memory_growth_under_64mb():
    assert_growth_under_limit("adapter", "reference", "theano.function, floatX float64")
