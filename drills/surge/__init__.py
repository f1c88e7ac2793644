"""Surge drills: everybody messages at once — does each channel still deliver in time?

Locust carries the load in its own processes (:mod:`drills.surge.process`,
:mod:`drills.surge.locustfiles`); the drill's asyncio probes keep measuring
delivery on the same channel at every step of the ramp
(:mod:`drills.surge.runner`); :mod:`drills.surge.curve` turns both into the
latency curve and the breaking point. Plans and the guard that refuses unsafe
ones are in :mod:`drills.surge.plan`.

Nothing here imports Locust: only the Locust subprocess loads ``locustfiles``.
"""

from drills.surge.plan import (
    HARD_MAX_DURATION_S,
    HARD_MAX_RATE,
    RampStep,
    SurgePlan,
    SurgeRefused,
    check_surge_allowed,
)

__all__ = [
    "HARD_MAX_DURATION_S",
    "HARD_MAX_RATE",
    "RampStep",
    "SurgePlan",
    "SurgeRefused",
    "check_surge_allowed",
]
