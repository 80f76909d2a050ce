"""The Theano adapter is built on the core's public API alone: no module of
``mbcore.adapters.theano`` imports a private name of the core (``mbcore._*``,
the kernels, or an underscored name from ``mbcore``), read from the installed
sources with ``ast``; and its C code is read from ``minibatch_op.c``, with a
cache version that follows that file."""
import pathlib

import pytest

import mbcore.adapters.theano as package  # first: configures theano
from mbcore.adapters.theano import _ccode, MinibatchOp
from mbcore import BatchSpec
from public_imports import private_core_imports

PACKAGE = package.__name__


def adapter_modules():
    root = pathlib.Path(package.__file__).parent
    return {f"{PACKAGE}.{p.stem}" if p.stem != "__init__" else PACKAGE: p
            for p in sorted(root.glob("*.py"))}


def test_the_adapter_package_has_its_modules():
    assert set(adapter_modules()) == {PACKAGE, f"{PACKAGE}._op", f"{PACKAGE}._ccode",
                                      f"{PACKAGE}._variables", f"{PACKAGE}._generator",
                                      f"{PACKAGE}._source_op"}


@pytest.mark.parametrize("module", sorted(adapter_modules()))
def test_no_private_core_import(module):
    path = adapter_modules()[module]
    assert private_core_imports(path.read_text(), module + (".__init__" if path.stem ==
                                                            "__init__" else "")) == []


@pytest.mark.parametrize("line,found", [
    ("from ..._kernels._gather import Sampler", ["mbcore._kernels._gather.Sampler"]),
    ("from ..._minibatch import _build", ["mbcore._minibatch._build"]),
    ("from ... import _spec", ["mbcore._spec"]),
    ("import mbcore._spec", ["mbcore._spec"]),
    ("from mbcore._state import make_state", ["mbcore._state.make_state"]),
    ("from mbcore import _batchspec", ["mbcore._batchspec"]),
    ("from mbcore import BatchSpec, GeneratorAdapter", []),
    ("from .._theano_compat import import_theano", []),
    ("from . import _ccode", []),
    ("import numpy as np", []),
])
def test_the_check_sees_private_imports(line, found):
    """The checker itself, on one line in mbcore/adapters/theano/_op.py."""
    assert private_core_imports(line, f"{PACKAGE}._op") == found


def test_c_code_is_the_file_and_its_version_follows_it():
    path = pathlib.Path(_ccode.__file__).parent / "minibatch_op.c"
    text = path.read_text()
    op = MinibatchOp(BatchSpec(4))
    assert op.c_support_code() == text
    assert op.c_code_cache_version() == _ccode.version(text)
    assert all(isinstance(v, int) for v in op.c_code_cache_version())
    assert _ccode.version(text + "\n") != _ccode.version(text)
    # Nothing of the spec is in the source: one compiled module serves all.
    assert MinibatchOp(BatchSpec([3, 2], random_seed=9)).c_support_code() == text
