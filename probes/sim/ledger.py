"""Ground truth: what really happened at a simulated far end, per drill token.

Every simulator keeps a :class:`Ledger`. It is written only by the simulator,
at the moment something happens, on the machine's monotonic clock (which is
shared by every process on the machine, so a simulator in another process
writes times the harness can compare with its own). The harness never reads
it — the journal must stand on what the probes observed — but the oracle
tests and ``tsunagari demo`` do, to check every record against what happened.

One :class:`Entry` per (token, recipient)::

    received_at   the far end took the message (it became the provider's)
    visible_at    a person reading the far end could see it (None: never, or not yet)
    fate          pending | visible | dropped | refused
    refusals      how often the far end said no before (or instead of) taking it,
                  e.g. a rate limit; ``refusal_codes`` says which codes
    detail        the simulator's note (e.g. "loss", the carrier status)

An *answer* (``RE[<token>] <who>``, roll calls and acknowledgements) carries the
question's token too; it is booked apart, under the recipient
``"answer:<who>"``, so the question's entry says only what happened to the question.

A message the far end never heard of (the channel was down: connection
refused or dropped) has no entry; the channel's down intervals are in
:meth:`Ledger.outages`.

    >>> ledger = Ledger("webhook")
    >>> e = ledger.received("131211/chat", "TSG-0000000000AB", at=10.0)
    >>> ledger.visible(e, at=10.3)
    >>> ledger.entry("TSG-0000000000AB").fate, ledger.entry("TSG-0000000000AB").visible_at
    (<Fate.VISIBLE: 'visible'>, 10.3)
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from probes.base import find_tokens
from probes.replies import parse_replies

__all__ = ["Entry", "Fate", "Ledger", "Outage"]


class Fate(enum.StrEnum):
    PENDING = "pending"  # received, not visible yet (or never: see the channel's latency)
    VISIBLE = "visible"  # a reader at the far end can see it
    DROPPED = "dropped"  # received, then lost on the way (the loss knob)
    REFUSED = "refused"  # the far end refused it for good (auth, invalid recipient)


@dataclass
class Entry:
    """What happened to one token for one recipient at the far end."""

    channel: str
    token: str
    recipient: str | None = None
    fate: Fate = Fate.PENDING
    received_at: float | None = None  # monotonic
    visible_at: float | None = None  # monotonic
    refusals: int = 0
    refusal_codes: list[str] = field(default_factory=list)
    detail: str = ""


@dataclass(frozen=True)
class Outage:
    """A channel's far end was down from ``start`` to ``end`` (monotonic; None: still down)."""

    channel: str
    start: float
    end: float | None = None

    def covers(self, at: float) -> bool:
        return self.start <= at and (self.end is None or at <= self.end)


class Ledger:
    """The ground truth of one simulator (thread-safe: surge simulators use threads)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[tuple[str, str | None], Entry] = {}
        self._outages: list[Outage] = []
        self._down_since: dict[str, float] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, object]:
        """Picklable (a simulator in another process hands its ledger back): no lock."""
        with self._lock:
            state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ writing (simulator)

    def _get(self, channel: str, token: str, recipient: str | None) -> Entry:
        key = (token, recipient)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = Entry(channel, token, recipient)
        return entry

    def received(
        self, channel: str, token: str, recipient: str | None = None, *, at: float | None = None
    ) -> Entry:
        """The far end took *token* for *recipient* (first time counts)."""
        with self._lock:
            entry = self._get(channel, token, recipient)
            if entry.received_at is None:
                entry.received_at = time.monotonic() if at is None else at
                if entry.fate is Fate.REFUSED:  # refused before (temporarily), now taken
                    entry.fate = Fate.PENDING
            return entry

    def received_text(
        self, channel: str, text: str, recipient: str | None = None, *, at: float | None = None
    ) -> list[Entry]:
        """:meth:`received` for every drill message in *text* (an answer is booked as one).

        >>> ledger = Ledger("webhook")
        >>> [e.recipient for e in ledger.received_text("c", "RE[TSG-0000000000AB] 131211 ok\\n[TSG-0000000000AB]")]
        ['answer:131211']
        """
        return [self.received(channel, t, r, at=at) for t, r in _messages(text, recipient)]

    def visible(self, entry: Entry, *, at: float | None = None) -> None:
        """A reader can now see *entry* (first time counts)."""
        with self._lock:
            if entry.visible_at is None:
                entry.visible_at = time.monotonic() if at is None else at
                entry.fate = Fate.VISIBLE

    def dropped(self, entry: Entry, detail: str = "loss") -> None:
        """*entry* was taken, then lost on the way: it will never be visible."""
        with self._lock:
            entry.fate = Fate.DROPPED
            entry.detail = detail

    def refused(
        self,
        channel: str,
        token: str,
        recipient: str | None = None,
        *,
        code: str,
        final: bool = True,
    ) -> Entry:
        """The far end said no to *token* (``final=False``: "slow down", may be taken later)."""
        with self._lock:
            entry = self._get(channel, token, recipient)
            entry.refusals += 1
            entry.refusal_codes.append(code)
            if entry.received_at is None and (final or entry.fate is Fate.PENDING):
                entry.fate = Fate.REFUSED  # for good, or until (unless) a retry is taken
            return entry

    def refused_text(
        self,
        channel: str,
        text: str,
        recipient: str | None = None,
        *,
        code: str,
        final: bool = True,
    ) -> list[Entry]:
        return [
            self.refused(channel, t, r, code=code, final=final)
            for t, r in _messages(text, recipient)
        ]

    def note(self, entry: Entry, detail: str) -> None:
        with self._lock:
            entry.detail = detail

    def down(self, channel: str, is_down: bool, *, at: float | None = None) -> None:
        """The channel's far end went down (or came back)."""
        now = time.monotonic() if at is None else at
        with self._lock:
            if is_down and channel not in self._down_since:
                self._down_since[channel] = now
            elif not is_down and channel in self._down_since:
                self._outages.append(Outage(channel, self._down_since.pop(channel), now))

    # ------------------------------------------------------------------ reading (tests, demo)

    def entry(self, token: str, recipient: str | None = None) -> Entry | None:
        """The entry of *token* for *recipient*, or None when the far end never heard of it."""
        with self._lock:
            return self._entries.get((token, recipient))

    def entries(self, token: str | None = None) -> list[Entry]:
        with self._lock:
            return [e for (t, _r), e in self._entries.items() if token is None or t == token]

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries())

    def __len__(self) -> int:
        return len(self._entries)

    def outages(self, channel: str | None = None) -> list[Outage]:
        """Down intervals, closed and still open."""
        with self._lock:
            out = list(self._outages)
            out += [Outage(ch, start) for ch, start in self._down_since.items()]
        return [o for o in out if channel is None or o.channel == channel]

    def was_down(self, channel: str, start: float, end: float) -> bool:
        """Was *channel* down at any time between *start* and *end*?"""
        return any(
            o.start <= end and (o.end is None or o.end >= start) for o in self.outages(channel)
        )


def _messages(text: str, recipient: str | None) -> list[tuple[str, str | None]]:
    """(token, recipient) of each drill message in *text*: answers under ``answer:<who>``."""
    answers = parse_replies(text)
    if answers:
        return list(dict.fromkeys((token, f"answer:{who}") for token, who in answers))
    return [(t, recipient) for t in dict.fromkeys(find_tokens(text))]
