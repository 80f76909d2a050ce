"""Build the Cython kernels in ``_kernels/`` as ``mbcore._kernels.*``, and
ship ``adapters/mbcore_minibatch_theano.pth`` at the top of site-packages.

Compiler directives are set once here.  ``MBCORE_DEBUG=1`` turns bounds
checking, wraparound and initialisation checks back on for debugging.
"""
import glob
import os
import shutil

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_py import build_py

PTH = os.path.join("adapters", "mbcore_minibatch_theano.pth")


class build_py_with_pth(build_py):
    """Put the .pth file at the root of the build, which the wheel installs
    into site-packages: Python runs its import line at start-up (the Theano
    flag hook, see mbcore.adapters._theano_compat)."""

    def run(self):
        super().run()
        self.copy_file(PTH, os.path.join(self.build_lib, os.path.basename(PTH)))

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + [
            os.path.join(self.build_lib, os.path.basename(PTH))]

DEBUG = os.environ.get("MBCORE_DEBUG", "0") == "1"

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}

macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
extra = ["-O0", "-g"] if DEBUG else ["-O3"]
threads = ["-pthread"]

# The modules, in the order they import each other.  _simd and _pool hold
# what a process has one of (the vector level, the worker pool); _copy, the
# copy loops; _plan, the plan's indices and walk; _dispatch, the measured
# choices; _gather, the batch and its Python face; _hooks, what tests and
# benchmarks read and force.
MODULES = ("_simd", "_pool", "_copy", "_plan", "_dispatch", "_gather", "_hooks", "_random",
           "_permute")
# C compiled beside a module's generated C: the pool exists once a process.
C_SOURCES = {"_pool": ["_kernels/mb_pool.c"]}
HEADERS = sorted(glob.glob("_kernels/mb_*.h"))

# Modules that others reach at run time (their cdef functions and variables,
# through Cython's C-level import) are cimported by their installed name,
# mbcore._kernels.X; Cython finds their .pxd under that package path, which
# the source tree (where _kernels/ installs as mbcore._kernels) lacks, so a
# copy of those .pxd is laid out under build/.  The inline-only .pxd
# (_philox, _samplers, _permute) are cimported by plain name from _kernels/
# and compiled into each module that uses them.
LINKED = ("_simd", "_pool", "_copy", "_plan", "_dispatch", "_gather")
PXD_ROOT = os.path.join("build", "cython-include")


def stage_linked_pxd():
    pkg = os.path.join(PXD_ROOT, "mbcore", "_kernels")
    os.makedirs(pkg, exist_ok=True)
    for init in (os.path.join(PXD_ROOT, "mbcore", "__init__.pxd"),
                 os.path.join(pkg, "__init__.pxd")):
        if not os.path.exists(init):
            open(init, "w").close()
    for name in LINKED:
        shutil.copy2(os.path.join("_kernels", name + ".pxd"), pkg)


stage_linked_pxd()

extensions = [
    Extension(
        f"mbcore._kernels.{name}",
        [f"_kernels/{name}.pyx"] + C_SOURCES.get(name, []),
        include_dirs=[np.get_include(), "_kernels"],
        depends=HEADERS + C_SOURCES.get(name, []),
        define_macros=macros,
        extra_compile_args=extra + threads,
        extra_link_args=threads,
    )
    for name in MODULES
]

setup(ext_modules=cythonize(extensions, compiler_directives=directives,
                            include_path=[PXD_ROOT, "_kernels"]),
      cmdclass={"build_py": build_py_with_pth})
