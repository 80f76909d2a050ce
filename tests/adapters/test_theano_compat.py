"""``mbcore.adapters._theano_compat``: theano-pymc imports on NumPy 1.23 with
no flags from the user, and the user's own settings win.

Each case runs in a fresh interpreter (Theano reads its configuration once,
at import).  ``THEANORC`` points at a file in tmp_path, so a theanorc of the
machine cannot change the outcome.
"""
import os
import subprocess
import sys
import textwrap

import pytest

REPORT = textwrap.dedent("""
    import os, sys
    import theano
    print("FLAGS=" + os.environ.get("THEANO_FLAGS", "<unset>"))
    print("LDFLAGS=" + repr(theano.config.blas__ldflags))
""")


def run(code, tmp_path, flags=None, theanorc=None):
    env = {k: v for k, v in os.environ.items() if k not in ("THEANO_FLAGS", "THEANORC")}
    rc = tmp_path / "theanorc"
    if theanorc is not None:
        rc.write_text(theanorc)
    env["THEANORC"] = str(rc)
    if flags is not None:
        env["THEANO_FLAGS"] = flags
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    return proc


def values(out):
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_no_flags_needed(tmp_path):
    proc = run("import mbcore.adapters.theano\n"
               "from mbcore.adapters import _theano_compat as c\n"
               "print('SUPPLIED=' + str(c.flag_supplied))\n" + REPORT, tmp_path)
    assert proc.returncode == 0, proc.stderr
    v = values(proc.stdout)
    assert v["FLAGS"] == "blas__ldflags=" and v["LDFLAGS"] == "''"
    assert v["SUPPLIED"] == "True"
    # The BLAS notice is the expected configuration, not shown.
    assert "C-API based implementation" not in proc.stderr


def test_pymc3_model_after_adapter(tmp_path):
    code = textwrap.dedent("""
        from mbcore.adapters.theano import Minibatch
        import numpy as np, pymc3 as pm
        x = Minibatch(np.random.rand(100, 3), batch_size=10)
        with pm.Model():
            mu = pm.Normal("mu", 0, 1)
            pm.Normal("obs", mu, 1, observed=x, total_size=100)
        print("SHAPE=" + str(x.eval().shape))
    """)
    proc = run(code, tmp_path, flags="floatX=float32")
    assert proc.returncode == 0, proc.stderr
    assert values(proc.stdout)["SHAPE"] == "(10, 3)"


def test_other_user_flags_are_kept(tmp_path):
    proc = run("import mbcore.adapters.theano\n" + REPORT, tmp_path,
               flags="floatX=float32,warn_float64=ignore")
    assert proc.returncode == 0, proc.stderr
    assert values(proc.stdout)["FLAGS"] == "floatX=float32,warn_float64=ignore,blas__ldflags="


def test_user_flag_wins(tmp_path):
    proc = run("import mbcore.adapters.theano\n"
               "from mbcore.adapters import _theano_compat as c\n"
               "print('SUPPLIED=' + str(c.flag_supplied))\n" + REPORT, tmp_path,
               flags="blas__ldflags=-lblas_that_is_not_there")
    assert proc.returncode == 0, proc.stderr
    v = values(proc.stdout)
    assert v["SUPPLIED"] == "False"
    assert v["FLAGS"] == "blas__ldflags=-lblas_that_is_not_there"
    assert v["LDFLAGS"] == "'-lblas_that_is_not_there'"


def test_theanorc_wins(tmp_path):
    proc = run("import mbcore.adapters.theano\n" + REPORT, tmp_path,
               theanorc="[blas]\nldflags = -lfrom_theanorc\n")
    assert proc.returncode == 0, proc.stderr
    v = values(proc.stdout)
    assert v["FLAGS"] == "<unset>" and v["LDFLAGS"] == "'-lfrom_theanorc'"


def test_theano_imported_first_by_the_user_is_left_alone(tmp_path):
    proc = run("import theano\nimport mbcore.adapters.theano\n" + REPORT, tmp_path,
               flags="blas__ldflags=")
    assert proc.returncode == 0, proc.stderr
    assert values(proc.stdout)["FLAGS"] == "blas__ldflags="


def test_pymc3_imported_first_needs_no_flags(tmp_path):
    # The installed .pth file's finder supplies the flag when pymc3 imports
    # theano, then leaves sys.meta_path.
    code = textwrap.dedent("""
        import sys
        print("HOOKED=" + str(any(getattr(f, "__name__", None) == "mbcore_theano_flags"
                                  for f in sys.meta_path)))
        import pymc3
        print("LEFT=" + str(any(getattr(f, "__name__", None) == "mbcore_theano_flags"
                                for f in sys.meta_path)))
        from mbcore.adapters import _theano_compat as c
        print("SUPPLIED=" + str(c.flag_supplied))
    """) + REPORT
    proc = run(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    v = values(proc.stdout)
    assert v["HOOKED"] == "True" and v["LEFT"] == "False"
    assert v["FLAGS"] == "blas__ldflags=" and v["LDFLAGS"] == "''"
    assert v["SUPPLIED"] == "True"
    assert "C-API based implementation" not in proc.stderr


@pytest.mark.parametrize("order", ["theano", "pymc3"])
def test_hook_leaves_the_users_flag_and_theanorc(tmp_path, order):
    proc = run(f"import {order}\n" + REPORT, tmp_path,
               flags="blas__ldflags=-lblas_that_is_not_there")
    assert proc.returncode == 0, proc.stderr
    v = values(proc.stdout)
    assert v["FLAGS"] == "blas__ldflags=-lblas_that_is_not_there"
    assert v["LDFLAGS"] == "'-lblas_that_is_not_there'"
    proc = run(f"import {order}\n" + REPORT, tmp_path,
               theanorc="[blas]\nldflags = -lfrom_theanorc\n")
    assert proc.returncode == 0, proc.stderr
    v = values(proc.stdout)
    assert v["FLAGS"] == "<unset>" and v["LDFLAGS"] == "'-lfrom_theanorc'"


def test_clear_error_when_theano_failed_first(tmp_path):
    # Without the .pth file's finder (a source checkout on sys.path), theano
    # imported first fails, and the adapter's error says what to do.
    code = textwrap.dedent("""
        import sys
        sys.meta_path[:] = [f for f in sys.meta_path
                            if getattr(f, "__name__", None) != "mbcore_theano_flags"]
        try:
            import pymc3
        except AttributeError as e:
            print("FIRST=" + type(e).__name__)
        import mbcore.adapters.theano
    """)
    proc = run(code, tmp_path)
    assert values(proc.stdout)["FIRST"] == "AttributeError"
    assert proc.returncode != 0
    assert "ImportError: theano failed to import earlier in this process" in proc.stderr
    assert "Import mbcore.adapters.theano before theano or pymc3" in proc.stderr


@pytest.mark.parametrize("flags,expected", [
    ("", set()),
    ("floatX=float32", {"floatX"}),
    ("blas__ldflags=", {"blas__ldflags"}),
    ("a=1, blas__ldflags=-lopenblas ,b=2", {"a", "blas__ldflags", "b"}),
    ("gcc__cxxflags='-O3,-march=native',blas__ldflags=", {"gcc__cxxflags", "blas__ldflags"}),
])
def test_flag_keys_split_as_theano_does(flags, expected):
    from mbcore.adapters._theano_compat import _flag_keys
    from theano.configparser import parse_config_string
    assert _flag_keys(flags) == expected
    assert set(k.strip() for k in parse_config_string(flags, issue_warnings=False)) == expected
