"""report.py: the table's ratios come from the interleaved measurements the
``ours`` and adapter tests record, and from the minima when there are none
(run by ``make test``)."""
import json

import report


def bench(case, impl, t, kind="grid", **extra):
    return {"stats": {"min": t},
            "extra_info": dict(case=case, impl=impl, kind=kind, n=10, width=1, batch=2, **extra)}


def write(path, benchmarks):
    path.write_text(json.dumps({"machine_info": {}, "benchmarks": benchmarks}))
    return str(path)


def test_ratios_use_the_interleaved_times(tmp_path):
    core = write(tmp_path / "core.json", [
        bench("c", "ours", 1.0, interleaved={"ours": 2.0, "numpy": 10.0, "floor": 1.0,
                                              "rows": 1.5}),
        bench("c", "numpy", 4.0), bench("c", "floor", 0.5), bench("c", "rows", 0.9),
    ])
    adapter = write(tmp_path / "adapter.json", [
        bench("c", "adapter", 3.0, interleaved_adapter={"adapter": 2.0, "reference": 7.0}),
        bench("c", "reference", 3.0),
    ])
    lines = report.table(*report.load([core, adapter])[:2])
    row = dict(zip(lines[0], lines[1]))
    assert row["vs numpy"] == "5.00x"          # 10 / 2, not the minima's 4 / 1
    assert row["ours/floor"] == "2.00"
    assert row["rows/floor"] == "1.50"
    assert row["vs reference"] == "3.50x"      # 7 / 2, not the minima's 3 / 3
    assert row["adapter"] == "3000.00 ms"     # the time columns stay the minima


def test_ratios_fall_back_to_the_minima(tmp_path):
    only = write(tmp_path / "a.json", [
        bench("f", "adapter", 2.0, kind="theano-function"),
        bench("f", "reference", 5.0, kind="theano-function"),
    ])
    lines = report.table(*report.load([only])[:2])
    row = dict(zip(lines[0], lines[1]))
    assert row["vs reference"] == "2.50x"
    assert row["vs numpy"] == "-"
