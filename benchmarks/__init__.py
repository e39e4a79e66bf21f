"""Benchmarks that print figures, and the soak (`python3 -m benchmarks.soak`)."""
