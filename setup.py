"""Build the Cython kernels in ``_kernels/`` as ``mbcore._kernels.*``, and
ship ``adapters/mbcore_minibatch_theano.pth`` at the top of site-packages.

Compiler directives are set once here.  ``MBCORE_DEBUG=1`` turns bounds
checking, wraparound and initialisation checks back on for debugging.
"""
import os

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

extensions = [
    Extension(
        f"mbcore._kernels.{name}",
        [f"_kernels/{name}.pyx"],
        include_dirs=[np.get_include(), "_kernels"],
        depends=["_kernels/mb_philox_simd.h", "_kernels/mb_pool.h", "_kernels/mb_permute.h"],
        define_macros=macros,
        extra_compile_args=extra + threads,
        extra_link_args=threads,
    )
    for name in ("_random", "_gather", "_permute")
]

# _kernels is on the .pxd search path: the kernels cimport their shared inline
# helpers (_philox.pxd, _samplers.pxd, _permute.pxd) by plain name.
setup(ext_modules=cythonize(extensions, compiler_directives=directives,
                            include_path=["_kernels"]),
      cmdclass={"build_py": build_py_with_pth})
