"""benchmarks/timing.py's interleaved_min, the timer behind the benchmarks',
the gates' and the demo's ratios."""
import time

from timing import interleaved_min


def counting(calls, name, work=None):
    def fn():
        calls[name] = calls.get(name, 0) + 1
        if work:
            work()
    return fn


def test_fixed_calls_time_each_callable_alike():
    calls = {}
    best = interleaved_min({"a": counting(calls, "a"), "b": counting(calls, "b")},
                           rounds=3, calls=7)
    assert calls == {"a": 1 + 3 * 7, "b": 1 + 3 * 7}   # one warm-up call each
    assert set(best) == {"a", "b"} and all(0 < t < 0.01 for t in best.values())


def test_calibrated_rounds_tell_slow_from_fast():
    calls = {}
    best = interleaved_min({"sleep": counting(calls, "sleep", lambda: time.sleep(0.002)),
                            "noop": counting(calls, "noop")}, rounds=2, target=0.01)
    assert best["sleep"] >= 0.002 > best["noop"] * 10
    # About target seconds a round: a few sleeps (warm-up, calibration at 1
    # then 4 calls, two rounds of about 4), many no-ops.
    assert 3 <= calls["sleep"] <= 1 + 5 + 2 * 6
    assert calls["noop"] > 1000
