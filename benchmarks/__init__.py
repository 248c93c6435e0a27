"""Benchmarks run by `make bench`: each module measures one thing, run.py prints and saves them."""
