"""A meta-path finder that serves our CPU ``sgl_kernel`` where the real one cannot load.

It is installed at every interpreter start (``sglang_arctic_sgl_kernel.pth``),
so SGLang's spawned children get it too, whether the server was started by
``python -m sglang_arctic.launch_server`` or by plain ``sglang serve``. It must
stay cheap: nothing is imported until something imports ``sgl_kernel``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import logging
import os
import sys

NAME = "sgl_kernel"
FALLBACK_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), NAME)
# Set to "1" to never use the fallback (e.g. to see the real import error).
DISABLE_ENV = "SGLANG_ARCTIC_DISABLE_CPU_KERNELS"

logger = logging.getLogger(__name__)


class _AlreadyLoaded(importlib.abc.Loader):
    """Hands back a module that the finder has already executed."""

    def __init__(self, module):
        self._module = module

    def create_module(self, spec):
        return self._module

    def exec_module(self, module):
        pass


class CpuKernelFinder(importlib.abc.MetaPathFinder):
    def __init__(self):
        self._probing = False
        # Why the real package did not load (for diagnostics), or None.
        self.real_import_error: BaseException | None = None

    def find_spec(self, fullname, path=None, target=None):
        if fullname != NAME or self._probing:
            return None
        real = self._try_real()
        if real is not None:
            return importlib.machinery.ModuleSpec(
                NAME, _AlreadyLoaded(real), origin=getattr(real, "__file__", None)
            )
        return importlib.util.spec_from_file_location(
            NAME,
            os.path.join(FALLBACK_DIR, "__init__.py"),
            submodule_search_locations=[FALLBACK_DIR],
        )

    def _try_real(self):
        """Import the real package; on failure undo its partial import."""
        self._probing = True
        try:
            return importlib.import_module(NAME)
        except (ImportError, OSError) as exc:
            # ImportError covers both "not installed" and the CUDA build's
            # "libcuda.so.1: cannot open shared object file".
            self.real_import_error = exc
        finally:
            self._probing = False
        for mod in [m for m in sys.modules if m == NAME or m.startswith(NAME + ".")]:
            del sys.modules[mod]
        return None


def install() -> None:
    """Idempotent; called from the .pth file at interpreter start."""
    if any(isinstance(f, CpuKernelFinder) for f in sys.meta_path):
        return
    if os.environ.get(DISABLE_ENV) == "1":
        return
    sys.meta_path.insert(0, CpuKernelFinder())


def finder() -> CpuKernelFinder | None:
    return next((f for f in sys.meta_path if isinstance(f, CpuKernelFinder)), None)


def using_fallback() -> bool:
    """True when ``sgl_kernel`` in this process is our CPU build."""
    mod = sys.modules.get(NAME)
    return mod is not None and getattr(mod, "__file__", "").startswith(FALLBACK_DIR)
