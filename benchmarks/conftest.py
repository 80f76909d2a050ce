import pathlib
import sys

# The benchmark modules share cases.py; make it importable under
# --import-mode=importlib.
sys.path.insert(0, str(pathlib.Path(__file__).parent))


def pytest_benchmark_update_machine_info(config, machine_info):
    """Record the CPU model, the CPUs this process may use and mbcore's
    dispatch choices in every JSON file of ``make bench``."""
    import machine
    machine_info["mbcore"] = machine.describe()
