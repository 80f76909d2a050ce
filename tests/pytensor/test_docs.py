"""The examples of docs/pytensor.md and of the adapter's and BatchSpec's
docstrings, run as doctests."""
import doctest
from pathlib import Path

import numpy as np
import pytensor
import pytest

import mbcore._batchspec
import mbcore.adapters.pytensor as adapter

DOCS = Path(__file__).resolve().parents[2] / "docs" / "pytensor.md"


@pytest.mark.parametrize("module", [adapter, mbcore._batchspec], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_docs_page_examples():
    result = doctest.testfile(str(DOCS), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
