"""Tsunagari channel probes: one module per channel kind, plus local simulators.

The contract every kind implements is :class:`probes.base.Probe`; kinds are
found through the ``tsunagari.channels`` entry-point group.
"""

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
