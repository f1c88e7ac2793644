"""Metrics: the run digest, the state folded from digests, the collector, push and serve."""
