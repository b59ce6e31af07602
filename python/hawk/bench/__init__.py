"""Workload suites, baselines and reports."""
