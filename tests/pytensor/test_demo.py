"""The PyMC 5 demo (make demo-pymc, examples/pymc5_demo.py), shortened: it
fits, reports, plots."""
import importlib.util
import pathlib

import numpy as np

DEMO = pathlib.Path(__file__).resolve().parents[2] / "examples" / "pymc5_demo.py"
_spec = importlib.util.spec_from_file_location("pymc5_demo", DEMO)
demo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo)


def test_demo_fits_the_recorded_truth(tmp_path, capsys):
    res = demo.main(["--iterations", "1500", "--out", str(tmp_path), "--timing-rounds", "1",
                     "--no-progressbar"])
    out = capsys.readouterr().out
    assert "Estimates (ADVI on mbcore minibatches) against the truth" in out
    assert "pm.Minibatch" in out and "as fast" in out
    means = np.array([res["samples"][p].mean() for p in demo.PARAMS])
    # Least squares on all 20000 rows is within 0.014 of the truth; ADVI on
    # batches of 500 within 0.05 of it.
    np.testing.assert_allclose(means, res["truth"], atol=0.05)
    assert (tmp_path / "demo-pymc.png").stat().st_size > 10_000
