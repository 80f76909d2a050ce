"""Ratio gates of the PyMC 5 / PyTensor adapter: its speed goals (``make gates``).

The cases are those of test_pytensor_bench.py (see its docstring): ours and
``pm.Minibatch`` compiled in the same process, timed in interleaved rounds
(``interleaved_min``: min over rounds, best of up to five measurements), so a
noisy neighbour slows both alike.  Each gate asserts its goal divided by
``MARGIN`` and prints the ratio (``pytest -s``):

===============================  ==================
case                             goal (asserted)
===============================  ==================
function, C backend, batch 128   5x
function, C backend, batch 1e5   5x
function, Numba, batch 128       5x
function, Numba, batch 1e5       5x
ADVI step, batch 128             1.2x
ADVI step, batch 1e5             1.5x
===============================  ==================
"""
import importlib.util

import pytest

if importlib.util.find_spec("pytensor") is None or importlib.util.find_spec("pymc") is None:
    pytest.skip("the PyTensor adapter gates need pymc 5 (make gates-pymc runs them in "
                ".venv-pymc)", allow_module_level=True)

from cases import assert_goal  # noqa: E402
from test_pytensor_bench import ADVI_CASES, FUNCTION_CASES, cached_impls, case_id  # noqa: E402

from cases import MARGIN  # noqa: E402,F401 (the docstring's MARGIN)

GOALS = {
    ("function", "c", 128): 5.0,
    ("function", "c", 10**5): 5.0,
    ("function", "numba", 128): 5.0,
    ("function", "numba", 10**5): 5.0,
    ("advi", 128): 1.2,
    ("advi", 10**5): 1.5,
}


def gate(kind, case, goal):
    assert_goal(case_id(kind, case), cached_impls(kind, case), "reference", goal,
                names=("ours", "pm.Minibatch"))


@pytest.mark.parametrize("case", FUNCTION_CASES, ids=lambda c: case_id("function", c))
def test_function_gate(case):
    gate("function", case, GOALS[("function", *case)])


@pytest.mark.parametrize("case", ADVI_CASES, ids=lambda c: case_id("advi", c))
def test_advi_step_gate(case):
    gate("advi", case, GOALS[("advi", case)])
