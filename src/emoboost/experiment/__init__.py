"""Experiments: speaker-independent cross-validation runs, benchmarks over methods, the final refit."""
