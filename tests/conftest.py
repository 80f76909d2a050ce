"""Shared fixtures, and a guard that the tests run against the installed mbcore.

The tests must exercise the package as installed (compiled kernels included),
never the source tree: pytest runs with ``--import-mode=importlib`` and from
the venv's own ``pytest`` script, so the repo root is not on ``sys.path``.
Only this directory is added, so that test modules can ``import twins``.
"""
import filecmp
import sys
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import mbcore  # noqa: E402
from mbcore._kernels import _gather, _hooks, _random  # noqa: E402


def _installed_path(module):
    return Path(module.__file__).resolve()


def _check_installed():
    problems = []
    for mod in (mbcore, _gather, _random):
        path = _installed_path(mod)
        if "site-packages" not in path.parts:
            problems.append(f"{mod.__name__} imported from {path}, not from site-packages")
        for src in (REPO / "mbcore", REPO / "_kernels"):
            try:
                path.relative_to(src)
            except ValueError:
                continue
            problems.append(f"{mod.__name__} imported from the source tree: {path}")
    return problems


_PROBLEMS = _check_installed()
if _PROBLEMS:
    raise pytest.UsageError(
        "mbcore must be imported from the installed package (run "
        "`make .venv/.installed` and use .venv/bin/pytest): " + "; ".join(_PROBLEMS))


def _stale_sources():
    """Pure-Python sources whose installed copy differs from the tree."""
    installed = _installed_path(mbcore).parent
    return sorted(p.name for p in (REPO / "mbcore").glob("*.py")
                  if not (installed / p.name).exists()
                  or not filecmp.cmp(p, installed / p.name, shallow=False))


def pytest_report_header(config):
    lines = [f"mbcore {mbcore.__version__} from {_installed_path(mbcore).parent}",
             f"numpy {np.__version__}"]
    stale = _stale_sources()
    if stale:
        lines.append("WARNING: installed mbcore differs from the source tree in "
                     + ", ".join(stale) + " (run make .venv/.installed)")
    return lines


# ------------------------------------------------------------------ fixtures

@pytest.fixture
def rng():
    """A NumPy Generator with a fixed seed (test data, not the stream under test)."""
    return np.random.default_rng(20240601)


@pytest.fixture
def data2d(rng):
    """(100, 7) float64, C-contiguous."""
    return rng.standard_normal((100, 7))


@pytest.fixture(params=["scalar", "avx2", "avx512"])
def simd_level(request):
    """Draw at one vector level (``_kernels/mb_philox_simd.h``), the
    process's, in every kernel module, then restore it.  A level this CPU
    lacks is skipped."""
    try:
        old = _hooks._simd(request.param)
    except ValueError as e:
        pytest.skip(str(e))
    yield request.param
    _hooks._simd(old)


@pytest.fixture(scope="module")
def moredata():
    """The reference doc's 5-d array, shape (10, 20, 30, 40, 50) (96 MB)."""
    return np.random.default_rng(5).random((10, 20, 30, 40, 50))
