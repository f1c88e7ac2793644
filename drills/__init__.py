"""Tsunagari (繋がり) drill harness: registry, runner, journal, scoring, metrics."""
