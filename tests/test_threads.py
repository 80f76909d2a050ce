"""The worker pool and the thread limit: batches are the same on any number
of threads, after fork, and with several Python threads drawing at once;
set_num_threads / get_num_threads / num_threads / MBCORE_NUM_THREADS."""
import collections
import multiprocessing
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import mbcore
from mbcore import _threads
from mbcore._kernels import _gather, _hooks

import twins


@pytest.fixture
def split_every_batch():
    """Every batch of 16 rows or more is split over the thread limit."""
    old_n = mbcore.get_num_threads()
    old = _hooks._tune(parallel_min_bytes=0, parallel_min_ns=0)
    yield
    _hooks._tune(*old)
    _gather.set_num_threads(old_n)


def _cases():
    rng = np.random.default_rng(3)
    wide = rng.standard_normal((3000, 10))
    return {
        "w=1": (rng.standard_normal(50000), dict(batch_size=4000)),
        "w=10": (wide, dict(batch_size=2500)),
        "w=10 F-order": (np.asfortranarray(wide), dict(batch_size=2500)),
        "replace=False": (wide, dict(batch_size=2999, replace=False)),
        "multi-axis": (rng.standard_normal((3000, 40)), dict(batch_size=[2000, 7])),
        "uint8 rows of 37 B": (rng.integers(0, 255, (5000, 37), dtype=np.uint8),
                               dict(batch_size=3001)),
    }


CASES = _cases()
# More threads than this machine has CPUs, too.
THREADS = sorted({1, 2, 3, 4, 5, 8, 16, (os.cpu_count() or 1) + 3})


@pytest.mark.parametrize("case", list(CASES))
def test_batches_identical_on_every_thread_count(case, split_every_batch):
    data, kw = CASES[case]
    ref = None
    for t in THREADS:
        mbcore.set_num_threads(t)
        mb = mbcore.Minibatch(data, random_seed=11, **kw)
        got = [next(mb) for _ in range(3)]
        if ref is None:
            ref = got
            s = mb._sampler
            idx = [s.indices(k) for k in range(3)]
            for k in range(3):
                sel = tuple(slice(None) if i is None else i for i in idx[k])
                if len(idx[k]) > 1 and idx[k][1] is not None:
                    want = data[np.ix_(*[np.arange(n) if i is None else i
                                         for i, n in zip(idx[k], data.shape)])]
                else:
                    want = data[sel[0]]
                twins.assert_same_array(got[k], want)
        else:
            for a, b in zip(got, ref):
                twins.assert_same_array(a, b)


def test_pool_starts_the_workers_a_split_asks_for(split_every_batch):
    data = np.random.default_rng(0).standard_normal((20000, 4))
    mbcore.set_num_threads(6)
    mb = mbcore.Minibatch(data, batch_size=6000, random_seed=1)
    next(mb)
    assert _hooks._pool_workers() >= 5


def test_minibatches_identical_on_every_thread_count(split_every_batch):
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((4000, 6)), rng.integers(0, 9, 4000)
    ref = None
    for t in THREADS:
        mbcore.set_num_threads(t)
        got = [next(mbcore.minibatches(x, y, batch_size=3000, random_seed=4))
               for _ in range(2)]
        if ref is None:
            ref = got
        for pair, want in zip(got, ref):
            for a, b in zip(pair, want):
                twins.assert_same_array(a, b)


def test_small_batches_run_on_the_calling_thread(split_every_batch):
    # Under 16 rows a batch is never split, whatever the settings.
    mbcore.set_num_threads(8)
    s = mbcore.Minibatch(np.zeros((1000, 3)), batch_size=15)._sampler
    assert _hooks._batch_threads(s) == 1


# ------------------------------------------------------------------ fork

def _child_draw(conn, t):
    try:
        _gather.set_num_threads(t)
        _hooks._tune(parallel_min_bytes=0, parallel_min_ns=0)
        data = np.arange(200000, dtype=np.float64).reshape(20000, 10)
        mb = mbcore.Minibatch(data, batch_size=5000, random_seed=9)
        batches = [next(mb) for _ in range(3)]
        conn.send((batches, _hooks._pool_workers()))
    except BaseException as e:  # report, do not hang the parent
        conn.send(repr(e))
    finally:
        conn.close()


@pytest.mark.parametrize("t", [2, 4])
def test_child_of_fork_draws_the_parents_batches(t, split_every_batch):
    mbcore.set_num_threads(t)
    data = np.arange(200000, dtype=np.float64).reshape(20000, 10)
    mb = mbcore.Minibatch(data, batch_size=5000, random_seed=9)
    want = [next(mb) for _ in range(3)]      # the pool has workers now
    assert _hooks._pool_workers() >= t - 1
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child_draw, args=(child, t))
    p.start()
    child.close()
    assert parent.poll(60), "the child of fork did not answer in 60 s"
    res = parent.recv()
    p.join(30)
    assert not isinstance(res, str), res
    got, workers = res
    for a, b in zip(got, want):
        twins.assert_same_array(a, b)
    assert workers >= t - 1      # the child started workers of its own
    assert p.exitcode == 0


def test_fork_while_another_thread_draws(split_every_batch):
    # fork from one thread while another is inside a split batch: the child
    # starts with an idle pool and draws correctly.
    mbcore.set_num_threads(4)
    data = np.arange(400000, dtype=np.float64).reshape(40000, 10)
    stop = threading.Event()

    def draw():
        mb = mbcore.Minibatch(data, batch_size=20000, random_seed=2)
        while not stop.is_set():
            next(mb)

    th = threading.Thread(target=draw)
    th.start()
    try:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                mb = mbcore.Minibatch(data, batch_size=20000, random_seed=3)
                b = next(mb)
                code = 0 if np.array_equal(b, data[mb._sampler.indices(0)[0]]) else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    finally:
        stop.set()
        th.join()
    assert os.waitstatus_to_exitcode(status) == 0


# ------------------------------------------------------------------ Python threads

def test_python_threads_drawing_at_once_get_their_own_batches(split_every_batch):
    mbcore.set_num_threads(4)
    rng = np.random.default_rng(8)
    datas = [rng.standard_normal((30000, 8)) for _ in range(4)]
    want = []
    for k, d in enumerate(datas):
        mb = mbcore.Minibatch(d, batch_size=5000, random_seed=k)
        want.append([next(mb) for _ in range(15)])
    got = [None] * 4
    start = threading.Barrier(4)

    def run(k):
        mb = mbcore.Minibatch(datas[k], batch_size=5000, random_seed=k)
        start.wait()
        got[k] = [next(mb) for _ in range(15)]

    ths = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    for k in range(4):
        for a, b in zip(got[k], want[k]):
            twins.assert_same_array(a, b)


# ------------------------------------------------------------------ the limit

def test_set_and_get_num_threads():
    old = mbcore.get_num_threads()
    try:
        assert mbcore.set_num_threads(3) == old
        assert mbcore.get_num_threads() == 3
        assert mbcore.set_num_threads(1) == 3
        assert mbcore.get_num_threads() == 1
    finally:
        mbcore.set_num_threads(old)


@pytest.mark.parametrize("bad, exc, msg", [
    ("2", TypeError, "n must be an int, got str '2'"),
    (2.0, TypeError, "n must be an int, got float 2.0"),
    (True, TypeError, "n must be an int, got bool True"),
    (None, TypeError, "n must be an int, got NoneType None"),
    (0, ValueError, "n must be 1 to 1025, got 0"),
    (-3, ValueError, "n must be 1 to 1025, got -3"),
    (1026, ValueError, "n must be 1 to 1025, got 1026"),
])
def test_set_num_threads_rejects_bad_values(bad, exc, msg):
    old = mbcore.get_num_threads()
    with pytest.raises(exc, match="^" + msg.replace(".", r"\.") + "$"):
        mbcore.set_num_threads(bad)
    with pytest.raises(exc):
        with mbcore.num_threads(bad):
            pass
    assert mbcore.get_num_threads() == old


def test_num_threads_context_manager_restores_on_exception():
    old = mbcore.get_num_threads()
    with pytest.raises(KeyError):
        with mbcore.num_threads(5) as n:
            assert n == 5
            assert mbcore.get_num_threads() == 5
            raise KeyError("inside")
    assert mbcore.get_num_threads() == old
    with mbcore.num_threads(1):
        with mbcore.num_threads(2):
            assert mbcore.get_num_threads() == 2
        assert mbcore.get_num_threads() == 1
    assert mbcore.get_num_threads() == old


def _python(code, env=None, affinity=None):
    full = dict(os.environ)
    full.pop("MBCORE_NUM_THREADS", None)
    full.update(env or {})
    pre = f"import os; os.sched_setaffinity(0, {affinity!r}); " if affinity else ""
    return subprocess.run([sys.executable, "-P", "-c", pre + code], env=full,
                          capture_output=True, text=True, timeout=120)


def test_env_variable_sets_the_limit_at_import():
    r = _python("import mbcore; print(mbcore.get_num_threads())",
                env={"MBCORE_NUM_THREADS": "3"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "3"


@pytest.mark.parametrize("value, msg", [
    ("three", "MBCORE_NUM_THREADS must be an int, got 'three'"),
    ("0", "MBCORE_NUM_THREADS must be 1 to 1025, got 0"),
])
def test_bad_env_variable_fails_the_import(value, msg):
    r = _python("import mbcore", env={"MBCORE_NUM_THREADS": value})
    assert r.returncode != 0
    assert "ValueError: " + msg in r.stderr


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity here")
def test_default_limit_follows_the_cpu_affinity():
    r = _python("import mbcore; print(mbcore.get_num_threads())", affinity={0})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1"
    r = _python("import mbcore; print(mbcore.get_num_threads())")
    assert r.stdout.strip() == str(_threads.available_cpus())


def _cgroup_tree(tmp_path, proc_lines, files):
    proc = tmp_path / "cgroup"
    proc.write_text("".join(line + "\n" for line in proc_lines))
    for rel, text in files.items():
        f = tmp_path / "fs" / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    return str(proc), str(tmp_path / "fs")


@pytest.mark.parametrize("proc_lines, files, expected", [
    (["0::/job"], {"job/cpu.max": "150000 100000\n"}, 2),             # 1.5 CPUs
    (["0::/job"], {"job/cpu.max": "max 100000\n"}, None),
    (["0::/a/b"], {"a/b/cpu.max": "max 100000\n", "a/cpu.max": "400000 100000\n",
                   "cpu.max": "800000 100000\n"}, 4),                  # the parent's
    (["0::/"], {"cpu.max": "50000 100000\n"}, 1),
    (["4:cpu,cpuacct:/docker/x"], {"cpu,cpuacct/docker/x/cpu.cfs_quota_us": "300000\n",
                                   "cpu,cpuacct/docker/x/cpu.cfs_period_us": "100000\n"}, 3),
    (["4:cpu,cpuacct:/docker/x"], {"cpu,cpuacct/docker/x/cpu.cfs_quota_us": "-1\n",
                                   "cpu,cpuacct/docker/x/cpu.cfs_period_us": "100000\n"}, None),
    (["1:name=systemd:/"], {}, None),
])
def test_cgroup_cpu_quota(tmp_path, proc_lines, files, expected):
    proc, root = _cgroup_tree(tmp_path, proc_lines, files)
    assert _threads._cgroup_cpus(proc, root) == expected


# ------------------------------------------------------------------ calibration

def test_calibration_reads_what_a_source_spans_not_its_rows():
    # 2**33 rows with stride 0 span 8 bytes: the calibration (run afresh
    # here) reads those, not 2**33 rows, and the batch is right.
    data = np.broadcast_to(np.arange(1, dtype=np.int64) + 7, (2 ** 33 + 5,))
    s = mbcore.Minibatch(data, batch_size=1025, random_seed=1)._sampler
    _hooks._forget_calibration()
    t0 = time.perf_counter()
    assert _hooks._prefetch_ahead(s) == 0
    assert time.perf_counter() - t0 < 5.0      # reading 2**33 rows takes far longer
    assert (s.draw(0) == 7).all()


@pytest.mark.parametrize("view", ["reversed", "sliced"])
def test_calibration_on_strided_sources(view):
    base = np.arange(4_000_000, dtype=np.float64).reshape(400_000, 10)
    data = base[::-1] if view == "reversed" else base[:, 2:7]
    s = mbcore.Minibatch(data, batch_size=3000, random_seed=4)._sampler
    _hooks._forget_calibration()
    assert _hooks._prefetch_ahead(s) in (0, 4, 8, 16, 32)
    twins.assert_same_array(s.draw(5), data[s.indices(5)[0]])
    info = _hooks._dispatch_info()
    assert info["short_cells"]        # measured (40- and 80-byte rows), and kept


def _duel_of(counts):
    """The class whose duel is over these thread counts."""
    for c, duel in _hooks._thread_duels().items():
        if duel["threads"] == counts:
            return c
    raise AssertionError(f"no duel over {counts}: {_hooks._thread_duels()}")


def _many_count_minibatch():
    """A 3.2 MB batch with 16 threads allowed and a 1 us wake time: its
    class's candidates are 1, 2, 4, 8 and 16 threads."""
    mb = mbcore.Minibatch(np.full((10**5, 100), 1.5), batch_size=4096, random_seed=2)
    next(mb)
    _hooks._set_wake(1000, remeasure=False)
    next(mb)
    return mb


@pytest.fixture
def picked_four():
    """(a Minibatch of _many_count_minibatch, its class) under a limit of 16
    threads, the class's duel ended with a pick of 4 threads."""
    _hooks._forget_calibration()
    with mbcore.num_threads(16):
        try:
            mb = _many_count_minibatch()
            c = _duel_of([1, 2, 4, 8, 16])
            _hooks._set_thread_pick(c, 4)
            yield mb, c
        finally:
            _hooks._forget_calibration()


# After a thread choice, the rounds that go on timing the counts time the
# pick and the counts next to it, and the later duels are over those: on a
# many-core machine a round or duel over every count would run batches on
# one thread at many times the pick's time.
def test_rounds_after_a_thread_choice_time_the_pick_and_its_neighbours(picked_four):
    mb, c = picked_four
    seen = collections.Counter(_hooks._batch_threads(mb._sampler) for _ in range(2000))
    assert set(seen) == {2, 4, 8} and seen[4] > seen[2] + seen[8], seen


def test_a_later_thread_duel_is_over_the_pick_and_its_neighbours(picked_four):
    mb, c = picked_four
    # Untimed probes move the class through its 64 rounds after the choice
    # (96 batches a round here) to its next duel.
    for _ in range(20000):
        _hooks._batch_threads(mb._sampler)
        if not _hooks._thread_duels()[c]["done"]:
            break
    duel = _hooks._thread_duels()[c]
    assert not duel["done"] and duel["out"] == [1, 16], duel
    seen = set()
    end = time.perf_counter() + 20.0
    while not _hooks._thread_duels()[c]["done"]:
        assert time.perf_counter() < end, _hooks._thread_duels()[c]
        seen.add(_hooks._batch_threads(mb._sampler))
        next(mb)
    duel = _hooks._thread_duels()[c]
    assert seen <= {2, 4, 8} and len(seen) >= 2, seen
    assert duel["pick"] in (2, 4, 8), duel
    assert all(duel["times"][k] == (0, 0) for k in (1, 16)), duel


def test_set_thread_pick_names_a_class_and_a_count():
    with pytest.raises(ValueError, match="cls must be a class with a duel"):
        _hooks._set_thread_pick(10**6, 2)
    _hooks._forget_calibration()
    with mbcore.num_threads(16):
        try:
            _many_count_minibatch()
            c = _duel_of([1, 2, 4, 8, 16])
            with pytest.raises(ValueError, match=r"one of class .* counts \[1, 2, 4, 8, 16\], got 3"):
                _hooks._set_thread_pick(c, 3)
        finally:
            _hooks._forget_calibration()


# A thread duel keeps the fewest threads whose least time is within the
# noise of the fastest (the spread of their even and odd rounds' times, at
# most 5%): more threads that gain only the noise take CPUs for nothing.
@pytest.mark.parametrize("even, odd, expected", [
    ([1000, 990], [1015, 1000], (1, 0, 0, 0)),     # 2 threads 1% faster, noise 1.5%: one
    ([1000, 980], [1010, 985], (1, 1, 1, 1)),      # 2 threads 2% faster, noise 1%: two
    ([1000, 800], [1010, 810], (1, 1, 1, 1)),      # 2 threads 1.25x faster: two
    ([1000, 900], [1200, 905], (1, 1, 1, 1)),      # noise 20%, held to 5%: two
    ([1000, 960, 700], [1001, 961, 702], (2, 2, 2, 2)),
    ([1000, 0], [1002, 0], (0, 0, 0, 0)),          # 2 threads not timed
    ([1050, 1000], [1000, 1050], (0, 0, 0, 0)),    # a tie: one; each half's within 5%
    ([0, 0], [0, 0], (-1, -1, -1, -1)),
])
def test_thread_rule_keeps_fewer_threads_within_the_noise(even, odd, expected):
    assert _hooks._thread_rule(even, odd) == expected


def test_thread_rule_refuses_uneven_times():
    with pytest.raises(ValueError, match="same number .* got 2 and 3"):
        _hooks._thread_rule([1, 2], [1, 2, 3])


@pytest.mark.parametrize("loop", ["moves", "memcpy"])
def test_prefetch_recheck_of_short_rows_times_both_loops(loop):
    # Rows of 16 to 272 bytes are re-checked with both copy loops at every
    # distance: each is timed, the re-check ends on one of them, and every
    # batch on the way equals the rows its indices name (36-byte rows,
    # strided, so that a loop that copied the wrong bytes would show).
    _hooks._forget_calibration()
    base = np.arange(10**5 * 11, dtype=np.float32).reshape(10**5, 11)
    data = base[:, 1:10]
    s = mbcore.Minibatch(data, batch_size=64, random_seed=6)._sampler
    try:
        s.draw(0)
        after, most = _hooks._set_prefetch_cell(s, 8, loop=loop)
        state = _hooks._prefetch_recheck(s)
        assert state["loop"] == loop and set(state["loops"]) == {"moves", "memcpy"}
        step = 1
        end = time.perf_counter() + 20.0   # rounds 5 ms apart, at most 4 blocks of 8
        while not _hooks._prefetch_recheck(s)["done"]:
            assert time.perf_counter() < end, _hooks._prefetch_recheck(s)
            if step % 7 == 0:
                twins.assert_same_array(s.draw(step), data[s.indices(step)[0]])
            else:
                s.draw(step)
            step += 1
        state = _hooks._prefetch_recheck(s)
    finally:
        _hooks._forget_calibration()
    assert step > after
    assert state["done"] and state["loop"] in ("moves", "memcpy"), state
    assert state["ahead"] in (0, 4, 8, 16, 32), state
    for name in ("moves", "memcpy"):
        assert any(t > 0 for pair in state["loops"][name].values() for t in pair), state


def test_set_prefetch_cell_refuses_a_loop_for_long_rows():
    s = mbcore.Minibatch(np.zeros((10**5, 40)), batch_size=64, random_seed=6)._sampler
    s.draw(0)
    with pytest.raises(ValueError, match="loop='moves'.*320 bytes"):
        _hooks._set_prefetch_cell(s, 8, loop="moves")
    with pytest.raises(ValueError, match="loop must be"):
        _hooks._set_prefetch_cell(s, 8, loop="fast")


@pytest.mark.parametrize("threads", [1, 2])
def test_prefetch_recheck_counts_batches_at_one_thread_count(threads):
    # The re-check of a class's prefetch distance times its batches whole at
    # the thread count they run on, split batches included, and ends within
    # its bound of rounds with a distance it tried.
    _hooks._forget_calibration()
    mb = mbcore.Minibatch(np.full(10**6, 1.5), batch_size=8192, random_seed=3)
    with mbcore.num_threads(2):
        old = _hooks._tune(threads=threads)
        try:
            next(mb)
            after, most = _hooks._set_prefetch_cell(mb._sampler, 4)
            for _ in range(after):
                next(mb)
            state = _hooks._prefetch_recheck(mb._sampler)
            assert not state["done"] and state["counted"] == 0 and state["ahead"] == 4
            # Its rounds start 5 ms apart: at most 4 blocks of 8 rounds.
            end = time.perf_counter() + 20.0
            while not _hooks._prefetch_recheck(mb._sampler)["done"]:
                assert time.perf_counter() < end, _hooks._prefetch_recheck(mb._sampler)
                next(mb)
            state = _hooks._prefetch_recheck(mb._sampler)
        finally:
            _hooks._tune(*old)
            _hooks._forget_calibration()
    assert state["done"] and state["threads"] == threads, state
    assert state["ahead"] in (0, 4, 8, 16, 32) and state["run"] >= 1
    assert all(t > 0 for t in state["times"][state["ahead"]]), state
