"""Build steps that pyproject.toml cannot express.

The ``.pth`` file installs the CPU ``sgl_kernel`` import hook at every
interpreter start (see sgl-kernel/python/arctic_sgl_kernel/import_hook.py);
setuptools has no declarative way to put a file at the root of site-packages.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = Path(__file__).parent / "sgl-kernel" / "sglang_arctic_sgl_kernel.pth"


class BuildPyWithPth(build_py):
    def run(self):
        super().run()
        self.copy_file(str(PTH), str(Path(self.build_lib) / PTH.name), preserve_mode=0)


setup(cmdclass={"build_py": BuildPyWithPth})
