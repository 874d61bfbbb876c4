"""Benchmarks: one script per benchmark, results in bench/results/*.json, table in bench/README.md."""
