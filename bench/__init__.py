"""Benchmarks for clinic-ops: ``python -m bench [NAME ...]`` (see bench/README.md).

Each benchmark module has a ``main() -> list[Figure]`` and is registered in
``bench.__main__.BENCHMARKS``; every figure prints as ``NAME ours=… baseline=… ratio=…``.
"""
