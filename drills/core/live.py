"""Live channels: the ones that reach a real provider, refused without ``--live``.

A channel with ``sim:`` never does; any other is live unless its probe says
otherwise. :func:`check_live` is the one check, made before anything is sent by
the runner (every step), the scenario API and the dry run.
"""

from __future__ import annotations

from collections.abc import Iterable

from drills.core.errors import DrillSafetyError
from drills.core.registry import Target
from drills.core.requirements import ScenarioMistake
from probes.base import ProbeEnv

__all__ = ["LiveChannelRefused", "check_live", "live_channels"]


class LiveChannelRefused(DrillSafetyError, ScenarioMistake):
    """A live channel without ``--live``: refused for drill safety, and reported like any
    other mistake in how the scenario is run (``str()`` is ``"日本語 / English"``)."""


def live_channels(targets: Iterable[Target]) -> list[str]:
    """The keys of *targets* that reach a real provider, so need ``--live``.

    A channel with ``sim:`` never does. Any other is live unless its probe says
    otherwise (:meth:`probes.base.Probe.is_live`; building a probe does no I/O):
    a Twilio channel whose API base is on loopback, for one, is not.
    """
    keys = []
    for target in targets:
        channel = target.channel
        if channel.simulated:
            continue
        probe = channel.probe_class()(target.key, channel.settings, ProbeEnv())
        if probe.is_live():
            keys.append(target.key)
    return keys


def check_live(targets: Iterable[Target], *, live: bool) -> None:
    """The one live check: refuse a live channel without ``--live``, before anything is sent.

    Used by :meth:`Drill.check_safe` (every step of the runner) and by the
    scenario API before a step starts. Raises :class:`LiveChannelRefused` (a
    :class:`~drills.core.errors.DrillSafetyError` and a scenario mistake).
    """
    if live:
        return
    keys = live_channels(targets)
    if keys:
        shown = ", ".join(keys[:8]) + (" …" if len(keys) > 8 else "")
        raise LiveChannelRefused(
            f"実チャネル（sim: のないチャネル）への送信には --live が必要です: {shown}",
            f"live channels (without sim:) need --live: {shown}",
        )
