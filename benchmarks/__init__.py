"""Benchmark scripts (``python benchmarks/<name>.py``); importable for the tests and the demo."""
