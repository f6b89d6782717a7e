"""Benchmarks (`make bench`): one flat JSON object of named figures in bench.json."""
