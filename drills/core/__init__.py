"""The drill core: registry, runner, delivery, journal, events, scoring model, errors.

Imports nothing above it (steps, operator layer, reporting, metrics, CLI); the
``import-linter`` contracts in ``pyproject.toml`` hold it to that.
"""
