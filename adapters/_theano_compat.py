"""Run theano-pymc 1.1.2 on NumPy >= 1.23 and Python 3.11 without asking the
user for flags.

Two things stand in the way, and mbcore sets up both before theano is first
imported:

BLAS (the ``blas__ldflags`` setting)
    theano-pymc 1.1.2 reads ``numpy.distutils.__config__.blas_opt_info`` to
    work out a default for ``blas__ldflags``; NumPy 1.23 wheels no longer have
    it, so ``import theano`` raises ``AttributeError`` unless the setting has a
    value.  An empty value is not enough: Theano then declares the Fortran
    BLAS functions (``dgemm_``, ...) but defines only some of them, through
    NumPy's C API, and modules that need another one fail to load
    (``undefined symbol: dgemm_`` for float64 ``batched_dot``).  NumPy's wheel
    bundles an OpenBLAS built for 64-bit integers, whose functions carry a
    suffix (``dgemm_64_``), so it cannot serve; SciPy's wheel bundles one with
    the standard names (``scipy.libs/libopenblasp-*.so`` on Linux).
    ``supply_blas_flag()`` finds that library at run time (``find_blas``:
    it reads the library's ELF dynamic symbol table, it does not load it) and
    sets ``blas__ldflags=-L<dir> -l<name>``.  Without it (SciPy installed
    another way, no ELF, a path Theano's flag parser would split) it sets the
    empty value, as before, and warns that Theano's NumPy C-API BLAS is used.

    The flag is supplied when, and only when, the user has not set it:

    - not in ``THEANO_FLAGS`` (key ``blas__ldflags``),
    - not in a theanorc file (``[blas]`` section, ``ldflags`` option; the
      files are ``$THEANORC``, a ``os.pathsep``-separated list, else
      ``~/.theanorc``),
    - and Theano has not read its configuration yet (it does once, when
      ``theano.configparser`` is imported, so a flag set later has no
      effect).  Other ``theano.*`` entries in ``sys.modules`` (a ``None``
      placeholder that blocks one submodule, say) do not matter.

    It is added to ``os.environ["THEANO_FLAGS"]``, which Theano reads at
    import, so subprocesses that Theano starts see the same configuration.

Scan
    theano-pymc 1.1.2 builds its compiled scan (``theano.scan.scan_perform``)
    from C code that Cython 0.29.21 generated; that code does not compile on
    Python 3.11 (it includes ``longintrepr.h``, which 3.11 moved, and uses
    interpreter internals 3.11 changed; Cython 0.29.32 was the first to
    generate code that does).  Theano's Scan uses its Python implementation
    when ``import theano.scan.scan_perform_ext`` raises ImportError, but a
    failed build raises a plain Exception (after printing where it left the
    C code), so every function with a scan fails to compile.  A finder on
    ``sys.meta_path`` (``PythonScanFinder``) makes that import raise an
    ImportError that says why, when the shipped C code predates Python 3.11
    support and this is Python >= 3.11, and does nothing otherwise.  No Theano
    setting is changed: all other C code is compiled as usual.

Import order does not matter in an installed mbcore-minibatch: its
``mbcore_minibatch_theano.pth`` file (``adapters/``) puts a finder on
``sys.meta_path`` at interpreter start-up that does nothing until ``theano``
is first imported (by ``import pymc3``, say), then calls
``on_theano_import()``, removes itself, and lets the import go on.  It
imports nothing at start-up.  Without the hook (a source checkout on
``sys.path``), ``import mbcore.adapters.theano`` must come before ``import
theano`` or ``import pymc3``; if theano was imported first and failed,
``import_theano`` raises an ImportError that says so.
"""
import configparser
import glob
import importlib.util
import logging
import os
import re
import shlex
import struct
import sys

__all__ = ["import_theano", "on_theano_import", "supply_blas_flag", "flag_supplied",
           "blas_library", "find_blas", "blas_ldflags", "elf_defined_symbols",
           "install_scan_fallback", "compiled_scan_unavailable", "PythonScanFinder"]

BLAS_FLAG = "blas__ldflags"
HOOK_NAME = "mbcore_theano_flags"   # the .pth file's finder (a class of this name)
_BLAS_NOTICE = "Using NumPy C-API based implementation for BLAS functions"
_logger = logging.getLogger("mbcore.adapters")

# Whether this module added the flag, and the library it points at (None:
# the empty value), for tests and for the curious.
flag_supplied = False
blas_library = None


# ---------------------------------------------------------------- user settings

def _flag_keys(flags):
    """Keys set in a THEANO_FLAGS string, split as Theano's
    ``parse_config_string`` does (shlex, posix, comma separated)."""
    lex = shlex.shlex(flags, posix=True)
    lex.whitespace = ","
    lex.whitespace_split = True
    return {kv.split("=", 1)[0].strip() for kv in lex if "=" in kv}


def _theanorc_files():
    files = [os.path.expanduser(p)
             for p in os.getenv("THEANORC", "~/.theanorc").split(os.pathsep)]
    if os.getenv("THEANORC") is None and sys.platform == "win32":
        files.append(os.path.expanduser("~/.theanorc.txt"))
    return files


def _theanorc_sets_ldflags():
    cfg = configparser.RawConfigParser()
    try:
        cfg.read(_theanorc_files())
    except configparser.Error:
        # A malformed theanorc: Theano will report it itself; do not add a
        # flag that might hide the user's intent.
        return True
    return cfg.has_option("blas", "ldflags")


def user_sets_blas_flag(environ=None):
    """True when THEANO_FLAGS or a theanorc file sets ``blas__ldflags``."""
    environ = os.environ if environ is None else environ
    try:
        keys = _flag_keys(environ.get("THEANO_FLAGS", ""))
    except ValueError:
        return True  # unbalanced quotes: leave the string to Theano's parser
    return BLAS_FLAG in keys or _theanorc_sets_ldflags()


def _theano_config_read():
    """True once Theano has read THEANO_FLAGS and theanorc (an import of
    theano got as far as ``theano.configparser``, even if it failed later)."""
    return sys.modules.get("theano.configparser") is not None


# ---------------------------------------------------------------- BLAS

# The Fortran BLAS functions Theano's C code calls when blas__ldflags is set
# (Gemm, Dot22, Gemv, Ger, BatchedDot, in both precisions).
BLAS_SYMBOLS = frozenset({"sgemm_", "dgemm_", "sgemv_", "dgemv_", "sger_", "dger_",
                          "sdot_", "ddot_"})

_SHT_DYNSYM = 11
_SHN_UNDEF = 0
_STB_GLOBAL, _STB_WEAK = 1, 2


def elf_defined_symbols(path, names):
    """The names in ``names`` that the ELF shared library at ``path`` defines
    (global or weak, not undefined) in its dynamic symbol table; an empty set
    for a file that is not ELF or cannot be read.  Reads the file, never
    loads it."""
    names = set(names)
    try:
        with open(path, "rb") as f:
            ident = f.read(16)
            if len(ident) < 16 or ident[:4] != b"\x7fELF" or ident[4] not in (1, 2) \
                    or ident[5] not in (1, 2):
                return set()
            wide = ident[4] == 2
            end = "<" if ident[5] == 1 else ">"
            if wide:
                ehdr = struct.Struct(end + "HHIQQQIHHHHHH")
                shdr = struct.Struct(end + "IIQQQQIIQQ")
            else:
                ehdr = struct.Struct(end + "HHIIIIIHHHHHH")
                shdr = struct.Struct(end + "IIIIIIIIII")
            e = ehdr.unpack(f.read(ehdr.size))
            shoff, shentsize, shnum = e[5], e[10], e[11]
            if shoff == 0 or shnum == 0 or shentsize < shdr.size:
                return set()
            f.seek(shoff)
            table = f.read(shentsize * shnum)
            sections = [shdr.unpack_from(table, i * shentsize) for i in range(shnum)]
            # (name, type, flags, addr, offset, size, link, info, align, entsize)
            dynsym = next((s for s in sections if s[1] == _SHT_DYNSYM), None)
            if dynsym is None or dynsym[6] >= shnum or dynsym[9] == 0:
                return set()
            strtab = sections[dynsym[6]]
            f.seek(strtab[4])
            strings = f.read(strtab[5])
            f.seek(dynsym[4])
            symbols = f.read(dynsym[5])
            entsize = dynsym[9]
    except (OSError, struct.error):
        return set()
    found = set()
    wanted = {n.encode() for n in names}
    for off in range(0, len(symbols) - entsize + 1, entsize):
        if wide:
            st_name, st_info, _, st_shndx = struct.unpack_from(end + "IBBH", symbols, off)
        else:
            st_name, _, _, st_info, _, st_shndx = struct.unpack_from(end + "IIIBBH",
                                                                     symbols, off)
        if st_shndx == _SHN_UNDEF or (st_info >> 4) not in (_STB_GLOBAL, _STB_WEAK):
            continue
        stop = strings.find(b"\0", st_name)
        name = strings[st_name:stop if stop >= 0 else len(strings)]
        if name in wanted:
            found.add(name.decode())
    return found


def _scipy_package_dirs():
    try:
        spec = importlib.util.find_spec("scipy")   # finds, does not import
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    return list(spec.submodule_search_locations)


def find_blas(scipy_dirs=None):
    """The OpenBLAS that SciPy's wheel bundles (``scipy.libs/libopenblas*.so*``
    beside the ``scipy`` package), if it defines the standard Fortran BLAS
    functions (``BLAS_SYMBOLS``); else None.

    ``scipy_dirs``: the ``scipy`` package directories to look beside (default:
    where ``import scipy`` would find it, without importing it).
    """
    if scipy_dirs is None:
        scipy_dirs = _scipy_package_dirs()
    for pkg in scipy_dirs:
        libs = os.path.join(os.path.dirname(os.path.abspath(pkg)), "scipy.libs")
        for path in sorted(glob.glob(os.path.join(libs, "libopenblas*.so*"))):
            if elf_defined_symbols(path, BLAS_SYMBOLS) == BLAS_SYMBOLS:
                return path
    return None


# Theano splits blas__ldflags at whitespace and THEANO_FLAGS at commas (shlex,
# posix: quotes and backslashes are syntax); a path with any of these cannot
# be passed through both.
_UNSAFE_IN_FLAGS = re.compile(r"[\s,'\"\\]")


def blas_ldflags(path):
    """The ``blas__ldflags`` value that links the shared library ``path``
    (``-L<dir> -l<name>``, or ``-l:<file>`` for a name without the
    ``lib*.so`` form), or None when Theano could not parse it."""
    path = os.path.abspath(path)
    if _UNSAFE_IN_FLAGS.search(path):
        return None
    d, base = os.path.split(path)
    m = re.fullmatch(r"lib(.+)\.so", base)
    return f"-L{d} -l{m.group(1)}" if m else f"-L{d} -l:{base}"


class _DropBlasNotice(logging.Filter):
    """Drop Theano's warning that it uses NumPy's C-API BLAS when the empty
    flag was supplied here: mbcore's own warning has said so, with the
    consequences."""

    def filter(self, record):
        return not str(record.msg).startswith(_BLAS_NOTICE)


def supply_blas_flag(scipy_dirs=None):
    """Add ``blas__ldflags=<SciPy's OpenBLAS>`` (or the empty value when there
    is none) to ``THEANO_FLAGS`` unless the user set the flag (or this already
    did).  Call it before theano is imported.  ``scipy_dirs``: as for
    ``find_blas``."""
    global flag_supplied, blas_library
    if flag_supplied or user_sets_blas_flag():
        return
    path = find_blas(scipy_dirs)
    value = blas_ldflags(path) if path is not None else None
    flags = os.environ.get("THEANO_FLAGS", "")
    os.environ["THEANO_FLAGS"] = ((flags + "," if flags.strip() else "") + BLAS_FLAG + "="
                                  + (value or ""))
    flag_supplied = True
    blas_library = path if value else None
    if not value:
        logging.getLogger("theano.tensor.blas").addFilter(_DropBlasNotice())
        _logger.warning(
            "mbcore found no BLAS library with the standard Fortran symbols (dgemm_) "
            "for Theano (it looks for the OpenBLAS in SciPy's wheel, scipy.libs/%s), so "
            "Theano uses its NumPy C-API BLAS, with which some Ops fail to load "
            "(float64 batched_dot: 'undefined symbol: dgemm_').  Set the Theano flag "
            "blas__ldflags to a BLAS link line, e.g. THEANO_FLAGS='blas__ldflags=-lopenblas'.",
            "libopenblas*.so" if path is None else os.path.basename(path))


# ---------------------------------------------------------------- scan

SCAN_MODULE = "theano.scan.scan_perform_ext"
# The first Cython release whose generated C code builds on Python 3.11.
_CYTHON_FOR_311 = (0, 29, 32)
_scan_verdicts = {}


def compiled_scan_unavailable(scan_dirs):
    """Why Theano's compiled scan cannot be built here (a sentence), or None
    when it may be.  ``scan_dirs``: the ``theano.scan`` package's path; the C
    code is ``c_code/scan_perform.c`` there."""
    key = tuple(scan_dirs or ())
    if key not in _scan_verdicts:
        _scan_verdicts[key] = _scan_verdict(key)
    return _scan_verdicts[key]


def _scan_verdict(scan_dirs):
    if sys.version_info < (3, 11):
        return None
    for d in scan_dirs:
        cfile = os.path.join(d, "c_code", "scan_perform.c")
        try:
            with open(cfile, encoding="latin-1") as f:
                first = f.readline()
        except OSError:
            continue
        m = re.match(r"/\* Generated by Cython (\d+)\.(\d+)(?:\.(\d+))?", first)
        if m is None:
            return None
        version = tuple(int(x or 0) for x in m.groups())
        if version < _CYTHON_FOR_311:
            return (f"Theano's compiled scan is not available: its C code ({cfile}) was "
                    f"generated by Cython {'.'.join(map(str, version))}, which does not "
                    f"build on Python {sys.version_info[0]}.{sys.version_info[1]} (Cython "
                    f"{'.'.join(map(str, _CYTHON_FOR_311))} was the first to support "
                    f"Python 3.11); Theano's Scan uses its Python implementation instead")
        return None
    return None


class PythonScanFinder:
    """A ``sys.meta_path`` finder that makes ``import
    theano.scan.scan_perform_ext`` raise ImportError (saying why) when
    ``compiled_scan_unavailable`` says the compiled scan cannot be built, so
    that Theano's Scan falls back to its Python implementation; it passes
    every other import, and that one otherwise, to the finders after it."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == SCAN_MODULE:
            reason = compiled_scan_unavailable(path)
            if reason is not None:
                raise ImportError(reason, name=name)
        return None


def install_scan_fallback():
    """Put ``PythonScanFinder`` first on ``sys.meta_path`` (once)."""
    if PythonScanFinder not in sys.meta_path:
        sys.meta_path.insert(0, PythonScanFinder)


# ---------------------------------------------------------------- entry points

def on_theano_import():
    """Called by the .pth file's finder when ``theano`` is about to be
    imported for the first time: remove the finder, supply the BLAS flag
    (unless Theano's configuration was already read), install the scan
    fallback."""
    sys.meta_path[:] = [f for f in sys.meta_path if getattr(f, "__name__", None) != HOOK_NAME]
    if "theano" not in sys.modules and not _theano_config_read():
        supply_blas_flag()
    install_scan_fallback()


def import_theano():
    """Import and return the ``theano`` module, supplying the BLAS flag first
    when the user has not set it and installing the scan fallback (see the
    module docstring)."""
    install_scan_fallback()
    if sys.modules.get("theano") is not None:
        return sys.modules["theano"]
    failed_before = _theano_config_read()
    if not failed_before:
        supply_blas_flag()
    try:
        import theano
    except Exception as e:
        if failed_before:
            raise ImportError(
                "theano failed to import earlier in this process, before mbcore could "
                "configure it (theano-pymc 1.1.2 needs the Theano flag blas__ldflags on "
                "NumPy >= 1.23).  Import mbcore.adapters.theano before theano or pymc3 "
                "in a fresh process, or set THEANO_FLAGS=blas__ldflags= yourself.  "
                f"The error now: {type(e).__name__}: {e}") from e
        if not flag_supplied and "blas_opt_info" in str(e):
            raise ImportError(
                "theano failed to import: theano-pymc 1.1.2 needs the Theano flag "
                "blas__ldflags on NumPy >= 1.23, and your THEANO_FLAGS or theanorc "
                "sets it in a way Theano cannot use; set blas__ldflags= (empty) or a "
                f"BLAS link line.  The error: {type(e).__name__}: {e}") from e
        raise
    return theano
