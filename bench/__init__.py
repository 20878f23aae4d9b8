"""Benchmarks (`make bench`). Each module is runnable as `python -m bench.<name>` and writes its results
as JSON and a Markdown table under bench/results/ through :func:`bench.results.write_results`."""
