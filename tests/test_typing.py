"""The installed package is typed (PEP 561: ``py.typed``): mypy reads the
public API's annotations and rejects a call that breaks them."""
import importlib.util
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mypy") is None,
                                reason="mypy is in the test extra")

GOOD = """
    import numpy as np
    import mbcore

    mb = mbcore.Minibatch(np.zeros((10, 3)), batch_size=[4, None], random_seed=1)
    batch: np.ndarray = mb.draw(0, out=None)
    mb.seek(3)
    group = mbcore.minibatches(np.zeros(10), np.ones(10), batch_size=2, epochs=True)
    pair: tuple = group.draw(1)
    state: dict = group.state_dict()
    previous: int = mbcore.set_num_threads(2)
    with mbcore.num_threads(1):
        pass
"""


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One mypy cache for the module: NumPy's stubs are read once."""
    return tmp_path_factory.mktemp("mypy-cache")


def mypy(tmp_path, cache, source):
    path = tmp_path / "snippet.py"
    path.write_text(textwrap.dedent(source))
    return subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(cache), str(path)],
                          capture_output=True, text=True, cwd=tmp_path)


def test_public_api_type_checks(tmp_path, cache):
    run = mypy(tmp_path, cache, GOOD)
    assert run.returncode == 0, run.stdout + run.stderr


BAD = [  # (line, what mypy must say about it)
    ('mbcore.Minibatch(np.zeros(3)).seek("3")', 'Argument 1 to "seek"'),
    ('x: str = mbcore.get_num_threads()', 'Incompatible types in assignment'),
    ('mbcore.minibatches(np.zeros(3), batch_size=2, shard=3)', '"shard"'),
]


def test_type_errors_are_found(tmp_path, cache):
    head = "import numpy as np\nimport mbcore\n"
    run = mypy(tmp_path, cache, head + "".join(line + "\n" for line, _ in BAD))
    assert run.returncode == 1, run.stdout + run.stderr
    for k, (line, message) in enumerate(BAD):
        at = f"snippet.py:{k + 3}: error:"
        found = [m for m in run.stdout.splitlines() if m.startswith(at)]
        assert found and message in found[0], (line, run.stdout)
