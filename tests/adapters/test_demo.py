"""``make demo`` (examples/pymc3_demo.py): it runs end to end, and its step
timing calls both step functions alike."""
import importlib.util
import pathlib
import re

DEMO = pathlib.Path(__file__).resolve().parents[2] / "examples" / "pymc3_demo.py"
_spec = importlib.util.spec_from_file_location("pymc3_demo", DEMO)
demo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo)


def test_step_timing_calls_each_function_the_same_number_of_times():
    calls = {"a": 0, "b": 0}

    def counter(name):
        def fn():
            calls[name] += 1
        return fn

    best = demo.interleaved_min({"a": counter("a"), "b": counter("b")}, rounds=4, calls=25)
    assert calls == {"a": 1 + 4 * 25, "b": 1 + 4 * 25}   # one warm-up call each
    assert set(best) == {"a", "b"} and all(0 < t < 1 for t in best.values())


def test_demo_runs_and_reports_estimates_plot_and_step_times(tmp_path, capsys):
    demo.main(["--iterations", "200", "--batch-size", "100", "--out", str(tmp_path),
               "--no-progressbar"])
    out = capsys.readouterr().out
    for name in demo.PARAMS:
        assert re.search(rf"^  {re.escape(name)} +-?[0-9.]+ +-?[0-9.]+ ", out, re.M), name
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    m = re.search(r"mbcore minibatches +([0-9.]+) us\n  reference graph +([0-9.]+) us "
                  r"+\(ours is ([0-9.]+)x as fast\)", out)
    assert m, out
    ours, ref, ratio = map(float, m.groups())
    assert ours > 0 and ref > 0 and abs(ratio - ref / ours) < 0.01
