"""Benchmarks that print figures and JSON (speed and memory are measured here, not in unit tests)."""
