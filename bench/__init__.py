"""Benchmarks: each compares the code under test with a baseline in the same run."""
