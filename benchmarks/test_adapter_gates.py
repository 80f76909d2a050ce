"""Ratio gates of the Theano/PyMC3 adapter: its speed goals (``make gates``).

The cases are those of test_adapter_bench.py (see its docstring): ours and
the reference graph of the PyMC3 doc, compiled in the same process, timed in
interleaved rounds (benchmarks/timing.py, interleaved_min: min over rounds), so a
noisy neighbour slows both alike.  Each gate asserts its goal divided by
``MARGIN`` and prints the ratio (``pytest -s``):

==============================  ==================
case                            goal (asserted)
==============================  ==================
function, batch 128             1.8x
function, batch 128, 10 wide    1.8x
function, batch 1e5             8x
ADVI step, batch 128            1.05x
ADVI step, batch 1e5            1.3x
==============================  ==================

The 10-wide case is the core grid's n=1e5 w=10 b=128 (rows of 80 bytes
from an 8 MB source) through the adapter, the grid case of make bench's
table.

The adapter's memory gate runs in the correctness suite
(benchmarks/test_memory_gate.py).
"""
import importlib.util

import pytest

if importlib.util.find_spec("theano") is None or importlib.util.find_spec("pymc3") is None:
    pytest.skip("the adapter gates need theano-pymc and pymc3 (make test-adapter runs "
                "them in .venv-pymc3)", allow_module_level=True)

from cases import MARGIN, assert_goal  # noqa: E402,F401 (the docstring's MARGIN)
from cases import case_id as grid_case_id  # noqa: E402
from test_adapter_bench import (ADVI_CASES, FUNCTION_CASES, cached_impls,  # noqa: E402
                                case_id)

# Rows wider than one element, at batch 128 (the function cases are vectors).
WIDE_CASES = [(10**5, 10, 128)]


GOALS = {  # (kind, batch): goal, x the reference graph
    ("function", 128): 1.8,
    ("function", 10**5): 8.0,
    ("advi", 128): 1.05,
    ("advi", 10**5): 1.3,
}


def gate(kind, case):
    assert_goal(case_id(kind, case), cached_impls(kind, case), "reference",
                GOALS[(kind, case[2])])


@pytest.mark.parametrize("case", FUNCTION_CASES, ids=lambda c: case_id("function", c))
def test_function_gate(case):
    gate("function", case)


@pytest.mark.parametrize("case", ADVI_CASES, ids=lambda c: case_id("advi", c))
def test_advi_step_gate(case):
    gate("advi", case)


@pytest.mark.parametrize("case", WIDE_CASES, ids=grid_case_id)
def test_function_gate_wide_rows(case):
    impls = cached_impls("grid", case)
    assert_goal(f"function {grid_case_id(case)}",
                {"ours": impls["adapter"], "reference": impls["reference"]}, "reference",
                GOALS[("function", case[2])])
