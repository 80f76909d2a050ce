"""How many threads one batch may use.

A large batch is split into chunks that the calling thread and the workers
of a persistent pool claim from a shared counter (``_kernels/mb_pool.h``).
The limit is, by default, the number of CPUs this process may run on: its
CPU affinity, and the cgroup CPU quota when one is set (a container's
``--cpus``), not the host's core count.  ``MBCORE_NUM_THREADS``, read at
import, and ``set_num_threads`` override it; ``num_threads`` sets it for a
``with`` block.  Within the limit, each batch uses as many threads as its
size pays for (measured on the machine, see docs/tuning.md): small batches
run on the calling thread alone.  The threads never change a batch: every
index is a pure function of the seed, the step and its position.
"""
import math
import os
from contextlib import contextmanager
from typing import Iterator

from ._kernels import _gather

__all__ = ["set_num_threads", "get_num_threads", "num_threads", "available_cpus"]

ENV = "MBCORE_NUM_THREADS"


def _read_quota(kind, d):
    """CPUs of the quota set in cgroup directory d, None if none or unreadable."""
    try:
        if kind == "v2":
            with open(os.path.join(d, "cpu.max")) as f:
                quota, period = f.read().split()[:2]
            if quota == "max":
                return None
        else:
            with open(os.path.join(d, "cpu.cfs_quota_us")) as f:
                quota = f.read().strip()
            with open(os.path.join(d, "cpu.cfs_period_us")) as f:
                period = f.read().strip()
        quota, period = int(quota), int(period)
    except (OSError, ValueError):
        return None
    if quota <= 0 or period <= 0:
        return None
    return max(1, math.ceil(quota / period))


def _cgroup_cpus(proc_cgroup="/proc/self/cgroup", root="/sys/fs/cgroup"):
    """CPUs allowed by this process's cgroup CPU quota (v2 ``cpu.max``, v1
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), rounded up: the smallest
    quota of its cgroup and the cgroups above it; None when none is set or
    none can be read.  ``proc_cgroup`` names the process's cgroups (as
    /proc/self/cgroup does), ``root`` is where the hierarchy is mounted."""
    dirs = []
    try:
        with open(proc_cgroup) as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hier, ctrls, path = parts
        if hier == "0":
            bases = [("v2", root)]
        elif "cpu" in ctrls.split(","):
            bases = [("v1", root + "/cpu,cpuacct"), ("v1", root + "/cpu")]
        else:
            continue
        steps = [p for p in path.split("/") if p]
        for kind, base in bases:
            for k in range(len(steps), -1, -1):
                dirs.append((kind, os.path.join(base, *steps[:k])))
    if not dirs:
        dirs = [("v2", root), ("v1", root + "/cpu,cpuacct"), ("v1", root + "/cpu")]
    quotas = [q for q in (_read_quota(kind, d) for kind, d in dirs) if q is not None]
    return min(quotas) if quotas else None


def available_cpus() -> int:
    """The CPUs this process may use: its affinity mask's size, lowered to
    the cgroup CPU quota when there is one (at least 1)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_cpus()
    if quota is not None:
        n = min(n, quota)
    return max(1, n)


def _check(n, name="n"):
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{name} must be an int, got {type(n).__name__} {n!r}")
    if not 1 <= n <= _gather.MAX_THREADS:
        raise ValueError(f"{name} must be 1 to {_gather.MAX_THREADS}, got {n}")
    return n


def set_num_threads(n: int) -> int:
    """Use at most ``n`` threads (the caller's and ``n - 1`` workers) for one
    batch.

    Parameters
    ----------
    n : int
        The limit, at least 1.  It may exceed the CPUs: the pool then has
        that many workers, and batches that pay for them use them.

    Returns
    -------
    int
        The previous limit.
    """
    return _gather.set_num_threads(_check(n))


def get_num_threads() -> int:
    """The most threads one batch may use (see ``set_num_threads``)."""
    return _gather.get_num_threads()


@contextmanager
def num_threads(n: int) -> Iterator[int]:
    """``with mbcore.num_threads(n):`` limits batches to ``n`` threads in the
    block, and restores the old limit when it ends, by an exception too.

    Parameters
    ----------
    n : int
        The limit in the block, at least 1.  It is the process's, not the
        calling thread's.
    """
    old = set_num_threads(n)
    try:
        yield n
    finally:
        _gather.set_num_threads(old)


def _from_env():
    value = os.environ.get(ENV)
    if value is None or value.strip() == "":
        return available_cpus()
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"{ENV} must be an int, got {value!r}") from None
    return _check(n, ENV)


_gather.set_num_threads(_from_env())
