"""CPU build of the ``sgl_kernel`` ops that SGLang's CPU engine imports.

The package ``sgl_kernel`` that PyPI's ``sglang-kernel`` wheel installs is a
CUDA build: importing it without ``libcuda.so.1`` raises ``ImportError``.
SGLang's CPU engine imports a handful of ``*_cpu`` ops from it at module
import time, in every process. ``import_hook`` (installed at interpreter
start by ``sglang_arctic_sgl_kernel.pth``) tries the real package first and,
only when that fails, serves ``arctic_sgl_kernel/sgl_kernel/`` under the name
``sgl_kernel`` instead. A working CUDA build is therefore never shadowed.
"""
