"""Benchmarks: `python -m bench` (or `make bench`) prints each table; see README for the latest."""
