# mbcore developer entry points.  Every target creates the virtual
# environments it needs on first use (python3 -m venv + pip, nothing else).
#
#   make test    the correctness suite: core under NumPy 2.x and NumPy 1.23.5,
#                the Theano/PyMC3 adapter, the memory gate; its timing checks
#                catch only gross regressions, so it passes on any machine
#   make gates   the speed goals: ratio gates of the core and the adapter
#   make demo    the main job on the bundled dataset
#   make demo-pymc  the same on PyMC 5 (mbcore.adapters.pytensor)
#   (test and gates include the PyMC 5 / PyTensor adapter: test-pymc, gates-pymc)
#   make bench   the benchmark suite: table, JSON, plot in bench-out/

PYTHON ?= python3
VENV := .venv
VENV_NP123 := .venv-np123
VENV_PYMC3 := .venv-pymc3
VENV_PYMC5 := .venv-pymc
# The pin of pyproject.toml's pymc extra.
PYMC_VERSION := 5.28.5
# PyTensor's compile cache lives in the venv: tests never depend on a warm
# cache in the home directory (a cold one costs about 40 s per first fit).
PYTENSOR_ENV := PYTENSOR_FLAGS=compiledir=$(CURDIR)/$(VENV_PYMC5)/pytensor-compiledir
SOURCES := setup.py pyproject.toml $(wildcard _kernels/*.pyx _kernels/*.pxd _kernels/mb_*.h _kernels/mb_*.c _kernels/*.py mbcore/*.py mbcore/data/* adapters/*.py adapters/*.pth \
           adapters/pytensor/*.py adapters/theano/*.py adapters/theano/*.c)
PIP_QUIET ?= -q

.PHONY: test test-core test-np123 test-adapter gates gates-core gates-adapter demo bench clean
.PHONY: test-pymc gates-pymc demo-pymc

# NumPy 2.x: the core, its tests, the benchmarks.
$(VENV)/.installed: $(SOURCES)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_QUIET) --upgrade pip
	$(VENV)/bin/pip install $(PIP_QUIET) --force-reinstall --no-deps .
	$(VENV)/bin/pip install $(PIP_QUIET) ".[test,plot,data]"
	touch $@

# NumPy 1.23.5 running the same wheel-style build (compiled against NumPy 2).
$(VENV_NP123)/.installed: $(SOURCES)
	test -x $(VENV_NP123)/bin/python || $(PYTHON) -m venv $(VENV_NP123)
	$(VENV_NP123)/bin/pip install $(PIP_QUIET) --upgrade pip
	$(VENV_NP123)/bin/pip install $(PIP_QUIET) --force-reinstall --no-deps .
	$(VENV_NP123)/bin/pip install $(PIP_QUIET) ".[test]" "numpy==1.23.5"
	touch $@

# PyMC3 3.11.4 + theano-pymc 1.1.2 (NumPy 1.23.5): the adapter.
$(VENV_PYMC3)/.installed: $(SOURCES)
	test -x $(VENV_PYMC3)/bin/python || $(PYTHON) -m venv $(VENV_PYMC3)
	$(VENV_PYMC3)/bin/pip install $(PIP_QUIET) --upgrade pip
	$(VENV_PYMC3)/bin/pip install $(PIP_QUIET) --force-reinstall --no-deps .
	$(VENV_PYMC3)/bin/pip install $(PIP_QUIET) ".[pymc3,test,plot]"
	# h5py (with the NumPy pin above): the adapter's tests over an HDF5 source.
	$(VENV_PYMC3)/bin/pip install $(PIP_QUIET) h5py "numpy==1.23.5"
	touch $@

# PyMC 5 on PyTensor (NumPy 2.x, Numba): the PyTensor adapter.
$(VENV_PYMC5)/.installed: $(SOURCES)
	test -x $(VENV_PYMC5)/bin/python || $(PYTHON) -m venv $(VENV_PYMC5)
	$(VENV_PYMC5)/bin/pip install $(PIP_QUIET) --upgrade pip
	$(VENV_PYMC5)/bin/pip install $(PIP_QUIET) --force-reinstall --no-deps .
	$(VENV_PYMC5)/bin/pip install $(PIP_QUIET) ".[pymc,jax,test,plot,data]"
	# PyMC's own tests/test_data.py (TestMinibatch), from the sdist of the
	# pinned release: tests/pytensor/test_pymc_peer.py runs it on the adapter.
	rm -rf $(VENV_PYMC5)/pymc-sdist
	$(VENV_PYMC5)/bin/pip download $(PIP_QUIET) --no-deps --no-binary :all: \
	    -d $(VENV_PYMC5)/pymc-sdist "pymc==$(PYMC_VERSION)"
	tar -xzf $(VENV_PYMC5)/pymc-sdist/pymc-$(PYMC_VERSION).tar.gz -C $(VENV_PYMC5)/pymc-sdist \
	    pymc-$(PYMC_VERSION)/tests/test_data.py
	touch $@

# Tests import the installed package, never the source tree: pytest runs
# from the venv's own pytest script (which, unlike python -m pytest, does not
# put the repo root on sys.path) with --import-mode=importlib (pyproject.toml).
test: test-core test-np123 test-adapter test-pymc

test-core: $(VENV)/.installed
	$(VENV)/bin/pytest tests benchmarks/test_speed_regressions.py benchmarks/test_timing.py \
	    benchmarks/test_memory_gate.py benchmarks/test_decompose.py benchmarks/test_report.py

test-np123: $(VENV_NP123)/.installed
	$(VENV_NP123)/bin/pytest tests --ignore=tests/adapters

test-adapter: $(VENV_PYMC3)/.installed
	$(VENV_PYMC3)/bin/pytest tests/adapters \
	    benchmarks/test_memory_gate.py::test_adapter_memory_growth_under_64mb

test-pymc: $(VENV_PYMC5)/.installed
	$(PYTENSOR_ENV) $(VENV_PYMC5)/bin/pytest tests/pytensor tests/test_batchspec.py

gates-pymc: $(VENV_PYMC5)/.installed
	$(PYTENSOR_ENV) $(VENV_PYMC5)/bin/pytest -s benchmarks/test_pytensor_gates.py

# The speed goals, as ratios measured side by side in one run (-s prints them).
gates: gates-core gates-adapter gates-pymc

gates-core: $(VENV)/.installed
	$(VENV)/bin/pytest -s benchmarks/test_gates.py benchmarks/test_dispatch_gates.py \
	    benchmarks/test_manycore_gates.py benchmarks/test_epoch_gates.py \
	    benchmarks/test_memmap_gates.py benchmarks/test_source_gates.py

gates-adapter: $(VENV_PYMC3)/.installed
	$(VENV_PYMC3)/bin/pytest -s benchmarks/test_adapter_gates.py

# -P: put neither the repo root nor examples/ on sys.path, so that the
# installed mbcore (with its compiled kernels) is imported, not the source tree.
# (The demos then add examples/ and benchmarks/ themselves, for demo_report.py
# and timing.py; neither folder holds an mbcore package.)
demo: $(VENV_PYMC3)/.installed
	$(VENV_PYMC3)/bin/python -P examples/pymc3_demo.py --out demo-out

# The main job on PyMC 5 (pm.fit on mbcore.adapters.pytensor.Minibatch).
demo-pymc: $(VENV_PYMC5)/.installed
	$(PYTENSOR_ENV) $(VENV_PYMC5)/bin/python -P examples/pymc5_demo.py --out demo-out

bench: $(VENV)/.installed $(VENV_PYMC3)/.installed $(VENV_PYMC5)/.installed
	mkdir -p bench-out
	$(VENV)/bin/pytest benchmarks/test_core_bench.py --benchmark-only \
	    --benchmark-json=bench-out/core.json --benchmark-columns=min,median,iqr,rounds \
	    --benchmark-save=core --benchmark-storage=bench-out/history
	$(VENV_PYMC3)/bin/pytest benchmarks/test_adapter_bench.py --benchmark-only \
	    --benchmark-json=bench-out/adapter.json --benchmark-columns=min,median,iqr,rounds \
	    --benchmark-save=adapter --benchmark-storage=bench-out/history
	$(PYTENSOR_ENV) $(VENV_PYMC5)/bin/pytest benchmarks/test_pytensor_bench.py --benchmark-only \
	    --benchmark-json=bench-out/pytensor.json --benchmark-columns=min,median,iqr,rounds \
	    --benchmark-save=pytensor --benchmark-storage=bench-out/history
	$(VENV)/bin/python benchmarks/report.py bench-out/*.json \
	    --plot bench-out/bench.png --threads-plot bench-out/bench-threads.png \
	    --markdown bench-out/table.md

clean:
	rm -rf $(VENV) $(VENV_NP123) $(VENV_PYMC3) $(VENV_PYMC5) build dist *.egg-info bench-out demo-out
