"""Import theano-pymc 1.1.2 on NumPy >= 1.23 without asking the user for flags.

theano-pymc 1.1.2 reads ``numpy.distutils.__config__.blas_opt_info`` to work
out a default for its ``blas__ldflags`` setting; NumPy 1.23 wheels no longer
have it, so ``import theano`` raises ``AttributeError`` unless that setting
has a value.  ``import_theano()`` supplies the empty value (Theano then calls
BLAS through NumPy's C API) when, and only when, the user has not set it:

- not in ``THEANO_FLAGS`` (key ``blas__ldflags``),
- not in a theanorc file (``[blas]`` section, ``ldflags`` option; the files
  are ``$THEANORC``, a ``os.pathsep``-separated list, else ``~/.theanorc``),
- and theano has not been imported yet (its configuration is read once, at
  import, so a flag set later has no effect).

The flag is added to ``os.environ["THEANO_FLAGS"]``, which Theano reads at
import, so subprocesses that Theano starts see the same configuration.

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
import logging
import os
import shlex
import sys

__all__ = ["import_theano", "on_theano_import", "supply_blas_flag", "flag_supplied"]

BLAS_FLAG = "blas__ldflags"
HOOK_NAME = "mbcore_theano_flags"   # the .pth file's finder (a class of this name)
_BLAS_NOTICE = "Using NumPy C-API based implementation for BLAS functions"

# Whether this module added the flag (for tests and for the curious).
flag_supplied = False


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


class _DropBlasNotice(logging.Filter):
    """Drop Theano's warning that it uses NumPy's C-API BLAS: with the flag
    supplied here that is the intended configuration, not news."""

    def filter(self, record):
        return not str(record.msg).startswith(_BLAS_NOTICE)


def _theano_partly_imported():
    return any(name.startswith("theano.") for name in sys.modules)


def supply_blas_flag():
    """Add ``blas__ldflags=`` to ``THEANO_FLAGS`` unless the user set the flag
    (or this already did).  Call it before theano is imported."""
    global flag_supplied
    if flag_supplied or user_sets_blas_flag():
        return
    flags = os.environ.get("THEANO_FLAGS", "")
    os.environ["THEANO_FLAGS"] = (flags + "," if flags.strip() else "") + BLAS_FLAG + "="
    flag_supplied = True
    logging.getLogger("theano.tensor.blas").addFilter(_DropBlasNotice())


def on_theano_import():
    """Called by the .pth file's finder when ``theano`` is about to be
    imported for the first time: remove the finder, supply the flag."""
    sys.meta_path[:] = [f for f in sys.meta_path if getattr(f, "__name__", None) != HOOK_NAME]
    if "theano" not in sys.modules and not _theano_partly_imported():
        supply_blas_flag()


def import_theano():
    """Import and return the ``theano`` module, supplying the BLAS flag first
    when the user has not set it (see the module docstring)."""
    if "theano" in sys.modules:
        return sys.modules["theano"]
    failed_before = _theano_partly_imported()
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
