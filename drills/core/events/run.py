"""One run's step events, read once: :data:`StepEvent`, :data:`EVENT_TYPES`, :func:`decode`,
:class:`RunEvents` (the per-municipality formulas of the package docstring) and its
readers :func:`read_events` and :func:`run_events`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from drills.core.events.acknowledgement import AckChannel, AcknowledgementEvent
from drills.core.events.fallback import FallbackEvent, FallbackMunicipality
from drills.core.events.fields import EventError
from drills.core.events.outage import OutageEvent
from drills.core.events.preflight import PreflightEvent
from drills.core.events.requirement import RequirementEvent
from drills.core.events.rollcall import RollCallEvent, RollCallParticipant
from drills.core.events.surge import SurgeEvent
from drills.core.scoring import Ratio

if TYPE_CHECKING:
    from drills.core.journal import Journal

StepEvent = (
    FallbackEvent
    | RollCallEvent
    | AcknowledgementEvent
    | OutageEvent
    | SurgeEvent
    | RequirementEvent
    | PreflightEvent
)
"""Any step event."""

EVENT_TYPES: Mapping[str, type[StepEvent]] = {
    cls.kind: cls
    for cls in (
        FallbackEvent,
        RollCallEvent,
        AcknowledgementEvent,
        OutageEvent,
        SurgeEvent,
        RequirementEvent,
        PreflightEvent,
    )
}
"""Event class by the journal's event kind."""


def decode(kind: str, data: Any) -> StepEvent | None:
    """The typed event of a journal row's *kind* and *data*; None for a kind not listed here.

    Raises :class:`EventError` when *data* is not a readable event of that kind.
    """
    cls = EVENT_TYPES.get(kind)
    return None if cls is None else cls.from_data(data)


E = TypeVar("E", bound=StepEvent)


def _add(totals: dict[str, Ratio], code: str, good: float, total: float) -> None:
    prev = totals.get(code, Ratio(0.0, 0.0))
    totals[code] = Ratio(prev.good + good, prev.total + total)


@dataclass(frozen=True)
class RunEvents:
    """The typed step events of one run, in journal order, and what readers need of them.

    The per-municipality formulas are the package docstring's (every step counts, summed).
    ``unreadable`` holds the errors of events that could not be read (each names its
    kind and field); they are never guessed, and never counted.
    """

    run_id: str
    events: tuple[StepEvent, ...] = ()
    unreadable: tuple[EventError, ...] = ()

    def __iter__(self) -> Iterator[StepEvent]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    def of(self, cls: type[E]) -> list[E]:
        """The events of one class, in order: ``run.of(RollCallEvent)``."""
        return [e for e in self.events if isinstance(e, cls)]

    def unreadable_of(self, cls: type[StepEvent]) -> int:
        """How many events of *cls*'s kind could not be read."""
        return sum(1 for err in self.unreadable if err.kind == cls.kind)

    # -- per municipality, every step summed

    def fallback_ratios(self) -> dict[str, Ratio]:
        """Per municipality code: chains that reached it within their step / chains counted."""
        out: dict[str, Ratio] = {}
        for event in self.of(FallbackEvent):
            for m in event.municipalities:
                if m.counted:
                    _add(out, m.code, 1.0 if m.reached else 0.0, 1.0)
        return out

    def roll_call_ratios(self) -> dict[str, Ratio]:
        """Per municipality code: roll calls answered / roll calls it was asked in.

        A roll call that never reached its room counts for nobody.
        """
        out: dict[str, Ratio] = {}
        for event in self.of(RollCallEvent):
            if event.delivered:
                for m in event.municipalities:
                    _add(out, m.code, float(min(m.answered, m.expected)), float(m.expected))
        return out

    def acknowledgement_ratios(self) -> dict[str, Ratio]:
        """Per municipality code: people who answered / people expected, over its channels."""
        out: dict[str, Ratio] = {}
        for event in self.of(AcknowledgementEvent):
            for c in event.channels:
                if c.counted:
                    _add(out, c.code, float(min(c.answered, c.expected)), float(c.expected))
        return out

    # -- per municipality, every step's record (the detail behind the ratios)

    def fallbacks(self) -> dict[str, list[FallbackMunicipality]]:
        """Per municipality code: its chain in every fallback step, in order."""
        out: dict[str, list[FallbackMunicipality]] = {}
        for event in self.of(FallbackEvent):
            for m in event.municipalities:
                out.setdefault(m.code, []).append(m)
        return out

    def roll_calls(self) -> dict[str, list[RollCallParticipant]]:
        """Per municipality code: its part in every roll call that reached its room, in order."""
        out: dict[str, list[RollCallParticipant]] = {}
        for event in self.of(RollCallEvent):
            if event.delivered:
                for m in event.municipalities:
                    out.setdefault(m.code, []).append(m)
        return out

    def acknowledgements(self) -> dict[str, list[AckChannel]]:
        """Per municipality code: each of its channels in every acknowledgement step, in order."""
        out: dict[str, list[AckChannel]] = {}
        for event in self.of(AcknowledgementEvent):
            for c in event.channels:
                out.setdefault(c.code, []).append(c)
        return out

    def fallback_time_to_first(self) -> dict[str, float | None]:
        """Per municipality code: the slowest time to first success over its counted chains
        (the run's worst case); None when a counted chain never reached it."""
        out: dict[str, float | None] = {}
        for code, chains in self.fallbacks().items():
            counted = [m for m in chains if m.counted]
            if not counted:
                continue
            times = [m.time_to_first_s for m in counted if m.reached]
            done = len(times) == len(counted)
            out[code] = max(t for t in times if t is not None) if done and times else None
        return out

    def roll_call_answered_s(self) -> dict[str, float | None]:
        """Per municipality code: its slowest answer over the roll calls it was asked in;
        None when it missed one."""
        out: dict[str, float | None] = {}
        for code, parts in self.roll_calls().items():
            times = [m.answered_s for m in parts if m.answered and m.answered_s is not None]
            out[code] = max(times) if len(times) == len(parts) and times else None
        return out

    def names(self) -> dict[str, str]:
        """Municipality names the events carry, by code."""
        out: dict[str, str] = {}
        for event in self.events:
            rows: Iterable[FallbackMunicipality | RollCallParticipant | AckChannel]
            if isinstance(event, FallbackEvent | RollCallEvent):
                rows = event.municipalities
            elif isinstance(event, AcknowledgementEvent):
                rows = event.channels
            elif isinstance(event, SurgeEvent):
                if event.municipality_name:
                    out.setdefault(event.municipality_code, event.municipality_name)
                continue
            else:
                continue
            for r in rows:
                if r.name:
                    out.setdefault(r.code, r.name)
        return out


def read_events(run_id: str, rows: Iterable[Mapping[str, Any]]) -> RunEvents:
    """:class:`RunEvents` from journal rows (``{"kind", "data"}``, in order); kinds not listed
    here (a later version's, or a private one) are passed over."""
    events: list[StepEvent] = []
    errors: list[EventError] = []
    for row in rows:
        kind = row.get("kind")
        if not isinstance(kind, str):
            continue
        try:
            event = decode(kind, row.get("data"))
        except EventError as exc:
            errors.append(exc)
            continue
        if event is not None:
            events.append(event)
    return RunEvents(run_id, tuple(events), tuple(errors))


def run_events(journal: Journal, run_id: str) -> RunEvents:
    """The typed step events of *run_id*, in the order they were journalled.

    >>> from drills.core.journal import Journal                         # doctest: +SKIP
    >>> run = run_events(Journal("drills.sqlite"), run_id)         # doctest: +SKIP
    >>> run.roll_call_ratios()["131211"].value                     # doctest: +SKIP
    1.0
    """
    return read_events(run_id, journal.events(run_id))
