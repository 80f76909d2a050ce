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

from ._kernels import _gather

__all__ = ["set_num_threads", "get_num_threads", "num_threads", "available_cpus"]

ENV = "MBCORE_NUM_THREADS"


def _cgroup_cpus():
    """CPUs allowed by this process's cgroup CPU quota (v2 ``cpu.max``, v1
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), rounded up; None when
    there is no quota or it cannot be read."""
    paths = []
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                hier, ctrls, path = line.rstrip("\n").split(":", 2)
                if hier == "0":
                    paths.append(("v2", "/sys/fs/cgroup" + path.rstrip("/")))
                elif "cpu" in ctrls.split(","):
                    paths.append(("v1", "/sys/fs/cgroup/cpu,cpuacct" + path.rstrip("/")))
                    paths.append(("v1", "/sys/fs/cgroup/cpu" + path.rstrip("/")))
    except OSError:
        pass
    paths += [("v2", "/sys/fs/cgroup"), ("v1", "/sys/fs/cgroup/cpu,cpuacct"),
              ("v1", "/sys/fs/cgroup/cpu")]
    for kind, d in paths:
        try:
            if kind == "v2":
                with open(os.path.join(d, "cpu.max")) as f:
                    quota, period = f.read().split()[:2]
                if quota == "max":
                    return None
                quota, period = int(quota), int(period)
            else:
                with open(os.path.join(d, "cpu.cfs_quota_us")) as f:
                    quota = int(f.read())
                with open(os.path.join(d, "cpu.cfs_period_us")) as f:
                    period = int(f.read())
                if quota < 0:
                    return None
        except (OSError, ValueError):
            continue
        if quota > 0 and period > 0:
            return max(1, math.ceil(quota / period))
    return None


def available_cpus():
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


def set_num_threads(n):
    """Use at most ``n`` threads (the caller's and ``n - 1`` workers) for one
    batch; returns the old limit.  ``n`` may exceed the CPUs: the pool then
    has that many workers, and batches that pay for them use them.
    """
    return _gather.set_num_threads(_check(n))


def get_num_threads():
    """The most threads one batch may use (see ``set_num_threads``)."""
    old = _gather.set_num_threads(1)
    _gather.set_num_threads(old)
    return old


@contextmanager
def num_threads(n):
    """``with mbcore.num_threads(n):`` limits batches to ``n`` threads in the
    block, and restores the old limit when it ends, by an exception too.
    The limit is the process's, not the thread's."""
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
