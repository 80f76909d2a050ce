"""The PyTensor adapter is built on the core's public API alone: no module
of ``mbcore.adapters.pytensor`` imports a private name of the core, read
from the installed sources with ``ast``."""
import pathlib

import pytest

import mbcore.adapters.pytensor as package
from public_imports import private_core_imports

ROOT = pathlib.Path(package.__file__).parent
MODULES = sorted(p.stem for p in ROOT.glob("*.py"))


def test_the_adapter_has_its_modules():
    assert {"__init__", "_op", "_ccode", "_numba", "_jax"} <= set(MODULES)


@pytest.mark.parametrize("stem", MODULES)
def test_no_private_core_import(stem):
    module = f"{package.__name__}.{stem}"
    assert private_core_imports((ROOT / f"{stem}.py").read_text(), module) == []


def test_the_check_sees_a_private_import():
    assert private_core_imports("from mbcore._kernels import _gather",
                                f"{package.__name__}._numba") == ["mbcore._kernels._gather"]
