"""Hypothesis profiles for the fuzz suites: bounded and reproducible by default.

``default`` (the normal test command and CI): derandomized, no example database,
no per-example deadline — the same examples on every machine, a fixed cost.
``nightly``: many more examples, random seeds, for a scheduled job::

    HYPOTHESIS_PROFILE=nightly .venv/bin/pytest tests/fuzz -q -p no:cacheprovider \\
        --hypothesis-show-statistics

A suite's property is always the same: every input is accepted or refused with
the harness's own clear error (a ``RegistryError``, ``SettingsError``,
``ScenarioMistake``, an argparse usage exit 2) — never another exception, never a
hang, memory bounded.

Suites size each target as a fraction of the profile's ``max_examples`` (100 by
default, 2,000 at night), so the nightly profile scales every target alike.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {
    "database": None,
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "print_blob": True,
}

settings.register_profile("default", max_examples=100, derandomize=True, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("nightly", max_examples=2000, derandomize=False, **_COMMON)  # type: ignore[arg-type]
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
