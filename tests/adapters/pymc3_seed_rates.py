"""Failure rates of PyMC3's statistical tests over many Minibatch seeds.

    python tests/adapters/pymc3_seed_rates.py [--seeds 0-20] [--stream mbcore|pymc3]
                                              [--jobs 2] [-k EXPR] [--out rates.json]

PyMC3's ``test_fit_oo[mini-*]`` fit a model on ``pm.Minibatch`` batches at
the fixed Minibatch seed 42 and compare the posterior's mean and standard
deviation with the exact ones at a fixed tolerance.  Whether a given fit
lands inside the tolerance depends on the batches drawn, so the test passes
or fails with the random stream.  This script runs the selected tests
(PyMC3's own code, through ``pymc3_dropin``) once per seed, with mbcore's
Minibatch or with PyMC3's own, everything else as in the test, and prints
how often each fails: the evidence for the entries of ``pymc3_xfail.XFAIL``
(whose reasons quote the numbers).  With ``--stream pymc3`` PyMC3's
Minibatch gets one change, which NumPy 1.23 needs: its in-memory index is a
tuple, not a list (``pymc3_dropin``); its random stream is its own.

Run with the ``.venv-pymc3`` interpreter (``make test-adapter`` builds it).
"""
import argparse
import collections
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

HERE = pathlib.Path(__file__).resolve().parent
DEFAULT_K = "test_fit_oo and mini"


def pymc3_tests_dir():
    out = subprocess.run([sys.executable, "-c",
                          "import os, pymc3; print(os.path.dirname(pymc3.__file__))"],
                         capture_output=True, text=True, check=True, cwd=tempfile.gettempdir())
    return pathlib.Path(out.stdout.strip().splitlines()[-1]) / "tests"


def run(seeds, stream, k, workdir):
    """Run the tests selected by ``k`` once per seed in ``seeds`` (a, b):
    {test id without the seed: [(seed, outcome), ...]}."""
    tests = pymc3_tests_dir()
    xml = pathlib.Path(workdir) / f"{stream}-{seeds[0]}-{seeds[1]}.xml"
    ini = pathlib.Path(workdir) / "pytest.ini"
    ini.write_text("[pytest]\n")
    env = dict(os.environ, PYTHONPATH=str(HERE), PYMC3_DROPIN_SEEDS=f"{seeds[0]}-{seeds[1]}",
               PYMC3_DROPIN_STREAM=stream)
    subprocess.run([sys.executable, "-m", "pytest", "-c", str(ini), f"--rootdir={tests}",
                    "-p", "pymc3_dropin", "-p", "no:cacheprovider", "-q", "-k", k,
                    "-W", "ignore::DeprecationWarning", f"--junitxml={xml}",
                    str(tests / "test_variational_inference.py")],
                   env=env, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = collections.defaultdict(list)
    for case in ET.parse(xml).getroot().iter("testcase"):
        name = case.get("name")
        m = re.search(r"-?seed(\d+)", name)
        if m is None:               # a collection error, say: not a seeded run
            results[name].append((None, "error"))
            continue
        seed = int(m.group(1))
        test = name.replace(m.group(0), "").replace("[]", "")
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            if case.find(tag) is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
        results[test].append((seed, outcome))
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0-20", help="seed range a-b (b excluded)")
    ap.add_argument("--stream", default="mbcore", choices=["mbcore", "pymc3"])
    ap.add_argument("--jobs", type=int, default=1, help="pytest processes in parallel")
    ap.add_argument("-k", default=DEFAULT_K, help="pytest -k expression (PyMC3 test names)")
    ap.add_argument("--out", help="write the per-seed outcomes as JSON")
    args = ap.parse_args(argv)
    a, b = (int(x) for x in args.seeds.split("-"))
    step = -(-(b - a) // args.jobs)
    chunks = [(s, min(s + step, b)) for s in range(a, b, step)]
    results = collections.defaultdict(list)
    with tempfile.TemporaryDirectory() as workdir:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(len(chunks)) as pool:
            for part in pool.map(lambda c: run(c, args.stream, args.k, workdir), chunks):
                for test, outcomes in part.items():
                    results[test].extend(outcomes)
    print(f"stream={args.stream} seeds={a}..{b - 1}")
    for test, outcomes in sorted(results.items()):
        outcomes.sort(key=lambda so: (so[0] is None, so[0] or 0))
        failed = [s for s, o in outcomes if o == "failed"]
        other = [(s, o) for s, o in outcomes if o not in ("passed", "failed")]
        print(f"{test}: {len(failed)}/{len(outcomes)} failed "
              f"({100 * len(failed) / len(outcomes):.0f}%); failing seeds {failed}"
              + (f"; not run or errors: {other}" if other else ""))
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(
            {"stream": args.stream, "seeds": [a, b], "results": results}, indent=1))


if __name__ == "__main__":
    main()
