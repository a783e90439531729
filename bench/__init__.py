"""Benchmarks: each module returns rows (bench.report.Row); `bench/run` runs them all."""
