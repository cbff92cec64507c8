"""Build steps that pyproject.toml cannot express.

The ``.pth`` file installs the CPU ``sgl_kernel`` import hook at every
interpreter start (see sgl-kernel/python/arctic_sgl_kernel/import_hook.py);
setuptools has no declarative way to put a file at the root of site-packages.

``arctic_sgl_kernel._suffix_tree`` is the C++ suffix tree of SuffixDecoding
(sgl-kernel/csrc/suffix_tree/), bound with pybind11 and compiled by the
ordinary ``pip install .``.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.errors import CCompilerError, CompileError, ExecError, LinkError, PlatformError

try:
    from pybind11.setup_helpers import Pybind11Extension
    from pybind11.setup_helpers import build_ext as pybind11_build_ext
except ImportError as exc:  # only reachable with --no-build-isolation
    raise SystemExit(
        "sglang-arctic: building arctic_sgl_kernel._suffix_tree needs pybind11>=2.11 in the "
        "build environment; run `pip install 'pybind11>=2.11'` first (it is in "
        "[build-system] requires, so an isolated build gets it automatically)."
    ) from exc

ROOT = Path(__file__).parent
PTH = ROOT / "sgl-kernel" / "sglang_arctic_sgl_kernel.pth"
SUFFIX_TREE_DIR = Path("sgl-kernel") / "csrc" / "suffix_tree"


class BuildPyWithPth(build_py):
    def run(self):
        super().run()
        self.copy_file(str(PTH), str(Path(self.build_lib) / PTH.name), preserve_mode=0)


class BuildExtExplained(pybind11_build_ext):
    """Turns a missing or failing C++ compiler into an error that says what to install."""

    def run(self):
        try:
            super().run()
        except (CCompilerError, CompileError, ExecError, LinkError, PlatformError) as exc:
            raise SystemExit(
                "sglang-arctic: could not compile the C++ extension arctic_sgl_kernel._suffix_tree "
                f"({exc}). It needs a C++17 compiler (g++ >= 8 or clang++ >= 7) and the Python "
                "development headers; on Debian/Ubuntu: `apt-get install g++ python3-dev`."
            ) from exc


suffix_tree = Pybind11Extension(
    "arctic_sgl_kernel._suffix_tree",
    sources=[str(SUFFIX_TREE_DIR / "suffix_tree.cc"), str(SUFFIX_TREE_DIR / "bindings.cc")],
    depends=[str(SUFFIX_TREE_DIR / "suffix_tree.h")],
    cxx_std=17,
    extra_compile_args=["-O3"],
)

setup(
    ext_modules=[suffix_tree],
    cmdclass={"build_py": BuildPyWithPth, "build_ext": BuildExtExplained},
)
