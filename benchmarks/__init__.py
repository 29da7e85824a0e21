"""Benchmarks: scripts run with ``python -m benchmarks.<name>``; they print ratios measured in one run.

They live apart from the tests: they read the shared data, take minutes, and report numbers rather than
pass or fail.
"""
