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

    from drills.delivery import Delivery, Outcome
    from drills.errors import (
        DrillSafetyError,
        HarnessError,
        LockBusy,
        Problem,
        RegistryError,
        ScenarioError,
        TsunagariError,
    )
    from drills.journal import Journal
    from drills.registry import (
        SLO,
        Channel,
        Municipality,
        Registry,
        Target,
        load_registry,
        parse_registry,
    )
    from drills.runner import Drill, StepResult

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
    "Delivery": "drills.delivery",
    "Outcome": "drills.delivery",
    "DrillSafetyError": "drills.errors",
    "HarnessError": "drills.errors",
    "LockBusy": "drills.errors",
    "Problem": "drills.errors",
    "RegistryError": "drills.errors",
    "ScenarioError": "drills.errors",
    "TsunagariError": "drills.errors",
    "Journal": "drills.journal",
    "SLO": "drills.registry",
    "Channel": "drills.registry",
    "Municipality": "drills.registry",
    "Registry": "drills.registry",
    "Target": "drills.registry",
    "load_registry": "drills.registry",
    "parse_registry": "drills.registry",
    "Drill": "drills.runner",
    "StepResult": "drills.runner",
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
