"""Benchmark suite for the serving stack, kept apart from the tests (`make bench`)."""
