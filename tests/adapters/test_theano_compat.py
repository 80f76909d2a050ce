"""``mbcore.adapters._theano_compat``: theano-pymc imports and runs on NumPy
1.23 and Python 3.11 with no flags from the user (BLAS through the OpenBLAS
that SciPy's wheel bundles, scan through Theano's Python implementation where
its compiled one cannot be built), and the user's own settings win.

Each case runs in a fresh interpreter (Theano reads its configuration once,
at import).  ``THEANORC`` points at a file in tmp_path, so a theanorc of the
machine cannot change the outcome.
"""
import glob
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy
import pytest
import scipy

# The OpenBLAS that SciPy's wheel bundles (LP64: dgemm_) and the one NumPy's
# bundles (ILP64: dgemm_64_), as installed in this environment.
SCIPY_LIBS = pathlib.Path(scipy.__file__).resolve().parent.parent / "scipy.libs"
NUMPY_LIBS = pathlib.Path(numpy.__file__).resolve().parent.parent / "numpy.libs"
SCIPY_BLAS = sorted(glob.glob(str(SCIPY_LIBS / "libopenblas*.so")))
NUMPY_BLAS = sorted(glob.glob(str(NUMPY_LIBS / "libopenblas*.so")))


def scipy_blas_flag():
    """The blas__ldflags value mbcore supplies in this environment."""
    assert len(SCIPY_BLAS) == 1, SCIPY_BLAS
    name = os.path.basename(SCIPY_BLAS[0])[len("lib"):-len(".so")]
    return f"-L{SCIPY_LIBS} -l{name}"

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
    assert v["FLAGS"] == "blas__ldflags=" + scipy_blas_flag()
    assert v["LDFLAGS"] == repr(scipy_blas_flag())
    assert v["SUPPLIED"] == "True"
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
    assert values(proc.stdout)["FLAGS"] == ("floatX=float32,warn_float64=ignore,blas__ldflags="
                                            + scipy_blas_flag())


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
    assert v["FLAGS"] == "blas__ldflags=" + scipy_blas_flag()
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


# ------------------------------------------------------------ scan and BLAS

SCAN = textwrap.dedent("""
    import numpy as np
    import theano
    import theano.tensor as tt
    x = tt.dvector("x")
    s, _ = theano.scan(lambda v, acc: acc + v, sequences=x,
                       outputs_info=tt.constant(0.0, dtype="float64"))
    print("CUMSUM=" + repr(theano.function([x], s)(np.arange(5.0)).tolist()))
""")

BLAS = textwrap.dedent("""
    import numpy as np
    import theano
    import theano.tensor as tt
    rng = np.random.default_rng(0)
    a, b = tt.dtensor3(), tt.dtensor3()
    x, y = rng.random((4, 3, 5)), rng.random((4, 5, 2))
    got = theano.function([a, b], tt.batched_dot(a, b))(x, y)
    print("BATCHED_DOT=" + str(np.allclose(got, np.einsum("bij,bjk->bik", x, y))))
    m = tt.dmatrix()
    z = rng.random((40, 40))
    print("DOT=" + str(np.allclose(theano.function([m], tt.dot(m, m))(z), z @ z)))
    print("LDFLAGS=" + repr(theano.config.blas__ldflags))
""")


@pytest.mark.parametrize("first", ["pymc3", "mbcore.adapters.theano", "theano"])
def test_scan_runs(tmp_path, first):
    # theano-pymc 1.1.2's compiled scan (Cython 0.29.21 C code) does not build
    # on Python 3.11: Theano's Python scan runs instead, whoever imports theano.
    proc = run(f"import {first}\n" + SCAN, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert values(proc.stdout)["CUMSUM"] == "[0.0, 1.0, 3.0, 6.0, 10.0]"
    assert "theano_compilation_error" not in proc.stdout + proc.stderr


def test_scan_runs_with_the_users_flags(tmp_path):
    proc = run(SCAN, tmp_path, flags="blas__ldflags=,floatX=float32")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert values(proc.stdout)["CUMSUM"] == "[0.0, 1.0, 3.0, 6.0, 10.0]"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="the compiled scan builds before 3.11")
def test_compiled_scan_refused_with_a_clear_import_error(tmp_path):
    code = textwrap.dedent("""
        import theano
        try:
            import theano.scan.scan_perform_ext
        except ImportError as e:
            print("ERROR=" + str(e))
    """)
    proc = run(code, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    msg = values(proc.stdout)["ERROR"]
    assert "Cython 0.29.21" in msg and "Python 3.11" in msg and "Python implementation" in msg


@pytest.mark.parametrize("first", ["pymc3", "mbcore.adapters.theano"])
def test_blas_float64_batched_dot_and_dot(tmp_path, first):
    # With an empty blas__ldflags, Theano's NumPy-based dgemm_ stand-in makes
    # BatchedDot's module fail to load ("undefined symbol: dgemm_").
    proc = run(f"import {first}\n" + BLAS, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    v = values(proc.stdout)
    assert v["BATCHED_DOT"] == "True" and v["DOT"] == "True"
    assert v["LDFLAGS"] == repr(scipy_blas_flag())


def test_elf_symbols_tell_the_two_openblas_apart():
    from mbcore.adapters._theano_compat import BLAS_SYMBOLS, elf_defined_symbols
    assert SCIPY_BLAS and NUMPY_BLAS
    assert elf_defined_symbols(SCIPY_BLAS[0], BLAS_SYMBOLS) == set(BLAS_SYMBOLS)
    # NumPy's ILP64 build defines dgemm_64_ and friends, not dgemm_.
    assert elf_defined_symbols(NUMPY_BLAS[0], BLAS_SYMBOLS) == set()
    assert elf_defined_symbols(NUMPY_BLAS[0], {"dgemm_64_"}) == {"dgemm_64_"}
    assert elf_defined_symbols(__file__, BLAS_SYMBOLS) == set()      # not ELF


def test_find_blas_takes_scipys_bundled_openblas_only(tmp_path):
    from mbcore.adapters._theano_compat import blas_ldflags, find_blas
    assert find_blas() == SCIPY_BLAS[0]
    # A scipy whose bundled library lacks the plain symbols (NumPy's ILP64
    # build under SciPy's name) or that bundles none: no library.
    (tmp_path / "scipy").mkdir()
    (tmp_path / "scipy.libs").mkdir()
    assert find_blas([str(tmp_path / "scipy")]) is None
    (tmp_path / "scipy.libs" / "libopenblasp-r0-0.so").symlink_to(NUMPY_BLAS[0])
    assert find_blas([str(tmp_path / "scipy")]) is None
    # Flags Theano can parse: none for a path it would split.
    assert blas_ldflags("/a/b/libopenblasp-r0-1.2.so") == "-L/a/b -lopenblasp-r0-1.2"
    assert blas_ldflags("/a/b/libblas.so.3") == "-L/a/b -l:libblas.so.3"
    for bad in ("/a b/libblas.so", "/a,b/libblas.so", "/a'b/libblas.so", '/a"b/libblas.so'):
        assert blas_ldflags(bad) is None


def test_no_bundled_blas_falls_back_to_numpy_c_api_with_a_warning(tmp_path):
    # Run the supply step with a scipy that bundles no BLAS: the empty flag
    # (Theano's NumPy C-API BLAS), and a warning that says what that costs.
    (tmp_path / "scipy").mkdir()
    code = textwrap.dedent(f"""
        from mbcore.adapters import _theano_compat as c
        c.supply_blas_flag([{str(tmp_path / "scipy")!r}])
        print("SUPPLIED=" + str(c.flag_supplied))
    """) + REPORT
    proc = run(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    v = values(proc.stdout)
    assert v["SUPPLIED"] == "True" and v["FLAGS"] == "blas__ldflags=" and v["LDFLAGS"] == "''"
    assert "no BLAS library with the standard Fortran symbols" in proc.stderr
    assert "C-API based implementation" not in proc.stderr


# ------------------------------------------------------------ the hook

@pytest.mark.parametrize("placeholder", ["theano.d3viz", "theano.scan.scan_perform_ext"])
def test_hook_supplies_the_flag_despite_theano_entries_in_sys_modules(tmp_path, placeholder):
    # A None entry blocks one submodule's import; theano's configuration has
    # not been read yet, so the flag must still be supplied.
    code = f"import sys\nsys.modules[{placeholder!r}] = None\nimport pymc3\n" + REPORT + SCAN
    proc = run(code, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    v = values(proc.stdout)
    assert v["FLAGS"] == "blas__ldflags=" + scipy_blas_flag()
    assert v["CUMSUM"] == "[0.0, 1.0, 3.0, 6.0, 10.0]"
