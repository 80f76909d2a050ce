"""Ratio gates for machines with 8 or more usable CPUs (``make gates``).

On such a machine every batch of a megabyte or more must run:

- at least 1.2x faster than PyTorch's CPU ``index_select`` on all threads,
  with indices from ``torch.randint`` (where PyTorch is installed);
- within 1.5x of the contiguous copy of the same bytes on all usable threads
  (``cases.ThreadedFloor``);

and one-column batches of 1e5 from 1e7 rows at least 3x faster than
PyTorch.  Ours runs with mbcore's default thread count (every usable CPU).
The ratios are measured interleaved, the best of up to ``cases.ATTEMPTS``
measurements, and asserted with the core gates' ``MARGIN``.  On a machine
with fewer CPUs every gate is skipped with the count it found.
"""
import importlib.util

import numpy as np
import pytest

from cases import (GRID, MARGIN, SCALING, ThreadedFloor, assert_goal, best_ratio, case_id,
                   make_data)
from machine import usable_cpus
from mbcore import Minibatch

MIN_CPUS = 8
TORCH_NEED = 1.2
ONE_COLUMN_TORCH_NEED = 3.0
FLOOR_WITHIN = 1.5

CPUS = usable_cpus()
pytestmark = pytest.mark.skipif(CPUS < MIN_CPUS,
                                reason=f"{CPUS} usable CPUs; these gates need {MIN_CPUS}+")

LARGE = [c for c in GRID + SCALING if c[2] * c[1] * 8 >= 2**20]
ONE_COLUMN = (10**7, 1, 10**5)


def ours_and_floor(case):
    n, w, b = case
    data = make_data(n, w)
    out = np.empty((b,) + data.shape[1:])
    return data, Minibatch(data, batch_size=b, random_seed=0).__next__, ThreadedFloor(
        data, out, CPUS)


def torch_impl(data, b, seed=1):
    import torch
    torch.set_num_threads(CPUS)
    t = torch.from_numpy(data)
    g = torch.Generator().manual_seed(seed)
    n = data.shape[0]
    return lambda: torch.index_select(t, 0, torch.randint(0, n, (b,), generator=g))


@pytest.mark.parametrize("case", LARGE, ids=case_id)
def test_within_the_all_threads_copy(case):
    data, ours, floor = ours_and_floor(case)
    try:
        need = 1.0 / (FLOOR_WITHIN * MARGIN)
        ratio, t = best_ratio({"ours": ours, "floor": floor}, "floor", need)
    finally:
        floor.close()
    print(f"{case_id(case)}: {1 / ratio:.2f}x the {CPUS}-thread contiguous copy")
    assert ratio >= need, f"{case_id(case)}: {1 / ratio:.2f}x the floor > {FLOOR_WITHIN}x ({t})"


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="PyTorch not installed")
@pytest.mark.parametrize("case", LARGE + [ONE_COLUMN], ids=case_id)
def test_faster_than_pytorch(case):
    n, w, b = case
    data = make_data(n, w)
    ours = Minibatch(data, batch_size=b, random_seed=0).__next__
    goal = ONE_COLUMN_TORCH_NEED if case == ONE_COLUMN else TORCH_NEED
    assert_goal(f"{case_id(case)} against index_select on {CPUS} threads",
                {"ours": ours, "torch": torch_impl(data, b)}, "torch", goal)
