"""Benchmark suites: a matrix of runs, a parent MLflow run, a comparison table."""
