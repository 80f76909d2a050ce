import pathlib
import sys

# The benchmark modules share cases.py; make it importable under
# --import-mode=importlib.
sys.path.insert(0, str(pathlib.Path(__file__).parent))
