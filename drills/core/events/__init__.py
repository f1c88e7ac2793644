"""Step events: what a scenario step journals besides its deliveries, as typed records.

Every step writes one event through these classes (``ctx.record(event)``) and
every reader — scorecard, metrics, vantage view — reads them back through
:func:`run_events`, never through the JSON. Pure: no I/O here but the one
``journal.events(run_id)`` call in :func:`run_events`.

The model, in one paragraph:

*Events.* ``FallbackEvent`` (one per fallback step: per municipality, each
channel the chain tried), ``RollCallEvent`` (per participant: expected,
answered, when), ``AcknowledgementEvent`` (per municipality × channel:
expected and answered people, answer times), ``OutageEvent`` (what the drill
took away, and when), ``SurgeEvent`` (one surge of one channel: its ramp
steps and breaking point) and ``RequirementEvent`` (the verdicts of one
``expect``). Each is frozen, has ``kind`` (the journal's event kind),
``to_data()`` (JSON-ready, with ``"v": SCHEMA_VERSION``) and ``from_data()``.
An event without ``"v"`` is version 0 — what the code wrote before this
module; its shape is the same, so it reads unchanged. An event newer than
this code, or one that lacks a field or has one of the wrong type, raises
:class:`EventError` naming the kind and the field: never guessed.

*Results per municipality.* :class:`RunEvents` gives one formula for each.
**Every step of the run counts, summed**: a municipality in two roll calls is
expected twice. A run is a drill; each step is a requirement the municipality
had to meet in it, so the last step must not hide an earlier failure, and a
sum does not depend on the order concurrent steps reached the journal. As in
:mod:`drills.core.scoring`, what is not the municipality's doing is left out:

- fallback: each (step, municipality) counts 1, good when reached within the
  step's ``within_s``. An attempt sent into the drill's own outage is what a
  fallback drill is for: the chain must get past it to a channel the drill left
  up, and whether it did counts. Not counted: a chain that reached nothing when
  one of its attempts was a harness ``error`` (the verdict is *harness*), or
  when the drill had taken away every channel it tried (nothing was left to
  judge the municipality by).
- roll call: each (step, participant) counts ``expected`` (1), good
  ``answered``; a participant that cannot take part (``able: false``) counts
  as not answered, as its verdict says; nothing counts when the roll call
  itself never reached the room (``delivered: false``: no one could answer).
- acknowledgement: each (step, municipality, channel) counts ``expected``
  people, good ``answered`` (at most expected); a channel whose message was a
  harness ``error`` or sent into the drill's own outage is left out.

>>> e = FallbackEvent.from_data({"step": "fb", "order": ["chat"], "within_s": 4.0,
...     "escalate_after_s": 4.0, "municipalities": [{"code": "131211", "name": "足立区",
...     "reached": True, "latency_s": 1.5, "reached_via": "chat", "time_to_first_s": 1.5,
...     "attempts": []}]})
>>> RunEvents("r", (e,)).fallback_ratios()
{'131211': Ratio(good=1.0, total=1.0)}
>>> decode("fallback", {"step": "fb"})
Traceback (most recent call last):
  ...
drills.core.events.fields.EventError: fallback event: field 'order' is missing
"""

from __future__ import annotations

from drills.core.events.acknowledgement import AckChannel, AcknowledgementEvent, AckOverall
from drills.core.events.fallback import FallbackAttempt, FallbackEvent, FallbackMunicipality
from drills.core.events.fields import SCHEMA_VERSION, EventError
from drills.core.events.outage import OutageEvent
from drills.core.events.preflight import PreflightChannel, PreflightEvent
from drills.core.events.requirement import RequirementEvent, RequirementVerdict
from drills.core.events.rollcall import RollCallEvent, RollCallParticipant
from drills.core.events.run import (
    EVENT_TYPES,
    RunEvents,
    StepEvent,
    decode,
    read_events,
    run_events,
)
from drills.core.events.surge import SurgeBreakingPoint, SurgeEvent, SurgeRampStep, SurgeSlo

__all__ = [
    "EVENT_TYPES",
    "SCHEMA_VERSION",
    "AckChannel",
    "AckOverall",
    "AcknowledgementEvent",
    "EventError",
    "FallbackAttempt",
    "FallbackEvent",
    "FallbackMunicipality",
    "OutageEvent",
    "PreflightChannel",
    "PreflightEvent",
    "RequirementEvent",
    "RequirementVerdict",
    "RollCallEvent",
    "RollCallParticipant",
    "RunEvents",
    "StepEvent",
    "SurgeBreakingPoint",
    "SurgeEvent",
    "SurgeRampStep",
    "SurgeSlo",
    "decode",
    "read_events",
    "run_events",
]
