"""Imported by ``sglang_arctic_sgl_kernel.pth`` at every interpreter start."""

try:
    from arctic_sgl_kernel.import_hook import install as _install

    _install()
except Exception as _exc:  # never break interpreter start-up
    import sys as _sys

    _sys.stderr.write(f"sglang_arctic: CPU sgl_kernel hook not installed: {_exc}\n")
