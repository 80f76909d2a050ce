"""decompose.py, the script behind the README's "where the time goes", still runs
and prints every part of a batch (run by ``make test``)."""
import re

import decompose

PARTS = ["ours", "numpy", "floor", "rows 64M", "rows 4M", "cached", "one row", "py next"]


def test_decompose_prints_every_part(capsys):
    decompose.main(["1e4", "3", "128", "--rounds", "1"])
    out = capsys.readouterr().out
    assert "case n=10000 w=3 b=128" in out
    for part in PARTS:
        m = re.search(rf"{re.escape(part)} ([0-9.]+) us \(([0-9.]+)x\)", out)
        assert m and float(m.group(1)) > 0, f"{part!r} missing from:\n{out}"
    assert re.search(r"numpy [0-9.]+ us \(1\.00x\)", out)


def test_decompose_rejects_a_case_of_two_numbers(capsys):
    try:
        decompose.main(["1e4", "3"])
    except SystemExit as e:
        assert e.code == 2
    else:
        raise AssertionError("decompose accepted two numbers")
    assert "case must be three numbers n w b, got [10000.0, 3.0]" in capsys.readouterr().err
