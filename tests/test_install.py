"""What installing mbcore-minibatch puts in site-packages besides ``mbcore``.

The only extra is ``mbcore_minibatch_theano.pth``: at start-up it puts a
finder on ``sys.meta_path`` that waits for ``import theano``
(mbcore.adapters._theano_compat).  Start-up must stay cheap and must not
import mbcore or NumPy.
"""
import pathlib
import subprocess
import sys
import sysconfig

import pytest

PTH = pathlib.Path(sysconfig.get_paths()["purelib"]) / "mbcore_minibatch_theano.pth"


@pytest.mark.skipif(not PTH.exists(), reason="mbcore-minibatch is not installed in this "
                    "environment (make test installs it)")
def test_startup_hook_is_a_finder_that_imports_nothing():
    code = ("import sys\n"
            "hooks = [f for f in sys.meta_path if getattr(f, '__name__', None) == "
            "'mbcore_theano_flags']\n"
            "print(len(hooks), 'mbcore' in sys.modules, 'numpy' in sys.modules)\n"
            "import json\n"                       # other imports pass through
            "print(json.dumps([1]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert out[0] == "1 False False"
    assert out[1] == "[1]"
