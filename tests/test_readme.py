"""The README's examples are tests: the ```python blocks with >>> run, in
order and sharing one namespace (as a reader would type them), as doctests
against the installed package (ELLIPSIS on)."""
import doctest
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
BLOCKS = [b for b in BLOCKS if ">>>" in b]


def test_readme_has_examples():
    assert len(BLOCKS) >= 5


def test_readme_examples():
    parser = doctest.DocTestParser()
    globs = {}
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for i, block in enumerate(BLOCKS):
        test = parser.get_doctest(block, globs, f"README block {i}", str(README), 0)
        runner.run(test, clear_globs=False)
        globs = test.globs                # DocTest copied them; carry on
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} README examples failed (see output above)"
    assert result.attempted > 20


@pytest.mark.parametrize("module", ["mbcore._minibatch", "mbcore._generator", "mbcore._data"])
def test_docstring_examples(module):
    import importlib
    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
