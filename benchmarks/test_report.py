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


def test_thread_scaling_has_its_own_table(tmp_path):
    runs = []
    for k, (ours, floor) in {1: (8.0, 4.0), 2: (5.0, 2.0)}.items():
        for impl, t in (("ours", ours), ("floor", floor)):
            runs.append(bench(f"n=1e7 w=1 b=100000 threads={k}", impl, t, kind="threads",
                              threads=k))
    path = write(tmp_path / "core.json", runs)
    rows, meta = report.load([path])[:2]
    assert len(report.table(rows, meta)) == 1          # only the header: no grid rows
    lines = report.scaling(rows, meta)
    assert lines[1] == ["n=1e7 w=1 b=100000", "1", "8000.00 ms", "4000.00 ms", "2.00"]
    assert lines[2] == ["n=1e7 w=1 b=100000", "2", "5000.00 ms", "2000.00 ms", "2.50"]
    report.plot_threads(rows, meta, tmp_path / "threads.png")
    assert (tmp_path / "threads.png").stat().st_size > 0


def test_machine_record_names_the_cpu():
    import machine
    info = machine.describe()
    assert info["cpu_model"] and info["cpus_usable"] >= 1
    assert info["cpus_usable"] <= info["cpus_host"]
    text = report.describe({"mbcore": info})
    assert info["cpu_model"] in text and f"{info['cpus_usable']} of" in text


def test_machine_record_is_json_after_calibration():
    # pytest-benchmark writes the record into its JSON: every measurement the
    # dispatcher holds (single-axis and multi-axis classes) must serialise.
    import numpy as np

    import machine
    from mbcore import Minibatch
    for data, spec in [(np.zeros((10**5, 10)), 128), (np.zeros((2000, 500)), [1024, 64])]:
        mb = Minibatch(data, spec)
        for _ in range(5):
            next(mb)
    info = json.loads(json.dumps(machine.describe()))
    assert info["dispatch"]["cells"] and info["dispatch"]["walk_cells"]
