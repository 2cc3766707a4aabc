"""Benchmarks and strategy comparisons for socgw (`python -m bench...`; results in bench/results/)."""
