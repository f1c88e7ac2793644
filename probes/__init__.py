"""Tsunagari channel probes: one package per channel kind (mail, sms, chat), plus simulators.

The contract every kind implements is :class:`probes.base.Probe`; kinds are
found through the ``tsunagari.channels`` entry-point group.

The names below are imported on first use (PEP 562), so importing a light part
such as ``probes.sim.ledger`` does not load pydantic through ``probes.base``.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

    from probes.base import (
        DEFAULT_MARKER,
        Accepted,
        ChannelFault,
        ChannelRejected,
        ChannelSettings,
        ChannelUnreachable,
        Clock,
        DrillMessage,
        ObserverFault,
        Probe,
        ProbeEnv,
        ProbeError,
        Sighting,
        Sightings,
        find_tokens,
        new_token,
    )
    from probes.settings import Duration, SecretRef, SecretUnresolvable

__all__ = [
    "DEFAULT_MARKER",
    "Accepted",
    "ChannelFault",
    "ChannelRejected",
    "ChannelSettings",
    "ChannelUnreachable",
    "Clock",
    "DrillMessage",
    "Duration",
    "ObserverFault",
    "Probe",
    "ProbeEnv",
    "ProbeError",
    "SecretRef",
    "SecretUnresolvable",
    "Sighting",
    "Sightings",
    "find_tokens",
    "new_token",
]

# Where each public name lives (the same as the imports above, for type checkers).
_HOME = {
    "DEFAULT_MARKER": "probes.base",
    "Accepted": "probes.base",
    "ChannelFault": "probes.base",
    "ChannelRejected": "probes.base",
    "ChannelSettings": "probes.base",
    "ChannelUnreachable": "probes.base",
    "Clock": "probes.base",
    "DrillMessage": "probes.base",
    "ObserverFault": "probes.base",
    "Probe": "probes.base",
    "ProbeEnv": "probes.base",
    "ProbeError": "probes.base",
    "Sighting": "probes.base",
    "Sightings": "probes.base",
    "find_tokens": "probes.base",
    "new_token": "probes.base",
    "Duration": "probes.settings",
    "SecretRef": "probes.settings",
    "SecretUnresolvable": "probes.settings",
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
