"""Analysing models: evaluation, metrics, significance, reports, data summaries, rules, sweeps, trust."""
