"""Tsunagari (繋がり) drill harness: registry, runner, journal, scoring, metrics.

from drills import Drill, Journal, load_registry

registry = load_registry("registry.yaml")
async with Drill(registry, Journal("journal.sqlite"), scenario="首都直下地震") as drill:
    step = await drill.broadcast("全職員は参集してください", timeout=60)
"""

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
