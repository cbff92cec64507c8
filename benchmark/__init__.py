"""Benchmarks of sglang_arctic against its peers (see DESIGN.md section 5).

This folder is a package so that ``benchmark/datasets.py`` is imported as
``benchmark.datasets`` and never shadows the Hugging Face ``datasets`` library.
Run the tools from the repository root, e.g. ``python -m benchmark.side_by_side``.
"""
