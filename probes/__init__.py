"""Tsunagari channel probes: one module per channel kind, plus local simulators."""
