"""Developer tools, outside the runtime package and its image: the benchmarks and their
row-by-row baseline (make bench, make bench-days)."""
