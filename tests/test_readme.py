"""The examples of the README and of the user guide are tests: each page's
```python blocks with >>> run in order, sharing one namespace (as a reader
would type them), as doctests against the installed package (ELLIPSIS on)."""
import doctest
import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
# page: (least blocks, least examples), so that a page losing its examples fails
PAGES = {"README.md": (3, 8), "docs/guide.md": (5, 20), "docs/sources.md": (3, 15)}


def blocks(page):
    found = re.findall(r"```python\n(.*?)```", (REPO / page).read_text(), flags=re.S)
    return [b for b in found if ">>>" in b]


@pytest.mark.parametrize("page", PAGES)
def test_page_examples(page):
    least_blocks, least_examples = PAGES[page]
    found = blocks(page)
    assert len(found) >= least_blocks, f"{page}: {len(found)} example blocks"
    parser = doctest.DocTestParser()
    globs = {}
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for i, block in enumerate(found):
        test = parser.get_doctest(block, globs, f"{page} block {i}", str(REPO / page), 0)
        runner.run(test, clear_globs=False)
        globs = test.globs                # DocTest copied them; carry on
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} examples of {page} failed (see output above)"
    assert result.attempted >= least_examples


@pytest.mark.parametrize("module", ["mbcore._minibatch", "mbcore._group", "mbcore._generator", "mbcore._data"])
def test_docstring_examples(module):
    import importlib
    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
