"""Benchmarks of tf_pathattr: ``python -m benchmarks --quick`` is the speed and memory guard (see guard.py)."""
