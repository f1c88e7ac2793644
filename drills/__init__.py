"""Tsunagari (繋がり) drill harness: registry, runner, journal, scoring, metrics.

from drills import Drill, Journal, load_registry

registry = load_registry("registry.yaml")
async with Drill(registry, Journal("journal.sqlite"), scenario="首都直下地震") as drill:
    step = await drill.broadcast("全職員は参集してください", timeout=60)

The names below are imported on first use (PEP 562), so ``import drills`` — and
every ``drills.*`` module that does not need them, such as the command line's
help — loads neither pydantic, yaml nor any probe.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

    from drills.core.delivery import Delivery, Outcome
    from drills.core.errors import (
        DrillSafetyError,
        HarnessError,
        LockBusy,
        RegistryError,
        ScenarioError,
        TsunagariError,
    )
    from drills.core.journal import Journal
    from drills.core.problem import Problem
    from drills.core.registry import (
        SLO,
        Channel,
        Municipality,
        Registry,
        Target,
        load_registry,
        parse_registry,
    )
    from drills.core.runner import Drill, StepResult

__all__ = [
    "SLO",
    "Channel",
    "Delivery",
    "Drill",
    "DrillSafetyError",
    "HarnessError",
    "Journal",
    "LockBusy",
    "Municipality",
    "Outcome",
    "Problem",
    "Registry",
    "RegistryError",
    "ScenarioError",
    "StepResult",
    "Target",
    "TsunagariError",
    "load_registry",
    "parse_registry",
]

# Where each public name lives (the same as the imports above, for type checkers).
_HOME = {
    "Delivery": "drills.core.delivery",
    "Outcome": "drills.core.delivery",
    "DrillSafetyError": "drills.core.errors",
    "HarnessError": "drills.core.errors",
    "LockBusy": "drills.core.errors",
    "Problem": "drills.core.problem",
    "RegistryError": "drills.core.errors",
    "ScenarioError": "drills.core.errors",
    "TsunagariError": "drills.core.errors",
    "Journal": "drills.core.journal",
    "SLO": "drills.core.registry",
    "Channel": "drills.core.registry",
    "Municipality": "drills.core.registry",
    "Registry": "drills.core.registry",
    "Target": "drills.core.registry",
    "load_registry": "drills.core.registry",
    "parse_registry": "drills.core.registry",
    "Drill": "drills.core.runner",
    "StepResult": "drills.core.runner",
}


if not TYPE_CHECKING:  # type checkers read the imports above, so a misspelt name stays an error

    def __getattr__(name: str) -> Any:
        home = _HOME.get(name)
        if home is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        globals()[name] = value  # later lookups do not come back here
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
