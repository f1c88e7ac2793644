"""Acknowledgement (安否確認-style): recipients are asked to answer; answers are counted.

The message goes out like a broadcast; then, for ``window`` seconds from the
send, answers (``RE[<token>] <staff id>``) are collected per channel. ``staff``
is how many people read each channel (the denominator). Reported: the
response-rate curve (share of all expected answers over time) and the times
to 25 / 50 / 75 % answered, overall and per channel. Answer times are on the
monotonic clock (the observer's sighting of the answer minus the message's
send, ``Delivery.extra["sent_mono"]``), like latencies — never wall-clock differences.

On simulated channels, ``staff`` simulated people (``staff-001`` …) answer as
soon as they see the message, each with chance ``simulated.rate`` after a
delay drawn from ``simulated.delay``; their answers travel back through the
channel (its latency, loss, rate limit and outages apply).

Journal event ``acknowledgement`` (:class:`drills.core.events.AcknowledgementEvent`)::

    {"v", "step", "scenario", "vantage", "window_s", "staff",
     "channels": [{"code", "name", "channel", "kind", "token", "outcome", "expected", "answered",
                   "times_s": [...], "t25_s", "t50_s", "t75_s"}],
     "overall": {"expected", "answered", "t25_s", "t50_s", "t75_s", "curve": [[t_s, share], ...]}}
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from drills.core.delivery import Delivery, Outcome
from drills.core.events import AckChannel, AcknowledgementEvent, AckOverall
from drills.core.registry import Target
from drills.core.requirements import Row, Status, Verdict, percent
from drills.core.runner import Drill
from drills.steps.answers import AnswerDesk, SimulatedAnswers, reply_book, sent_mono
from probes.replies import Reply, ReplyBook

__all__ = ["AckResult", "ChannelAnswers", "response_curve", "run_acknowledgement", "time_to_share"]

INSTRUCTION = (
    "\n返信方法: [ ] 内のトークンを使い「RE[トークン] 職員ID 状況」と返信してください。"
    '\nTo answer: reply "RE[token] staff-id status" with the token in [ ] below.'
)


def response_curve(times: list[float], expected: int) -> list[tuple[float, float]]:
    """Cumulative share answered at each answer time.

    >>> response_curve([3.0, 1.0], 4)
    [(1.0, 0.25), (3.0, 0.5)]
    """
    if expected <= 0:
        return []
    return [(t, min(1.0, (i + 1) / expected)) for i, t in enumerate(sorted(times))]


def time_to_share(times: list[float], expected: int, share: float) -> float | None:
    """Seconds until *share* of *expected* had answered; None if it never got there.

    >>> time_to_share([1.0, 2.0, 3.0, 9.0], 4, 0.5), time_to_share([1.0], 4, 0.5)
    (2.0, None)
    """
    need = max(1, math.ceil(round(share * expected, 6)))
    ordered = sorted(times)
    return ordered[need - 1] if expected > 0 and len(ordered) >= need else None


@dataclass
class ChannelAnswers:
    """Answers on one municipality's channel."""

    target: Target
    delivery: Delivery | None
    expected: int
    times_s: list[float] = field(default_factory=list)

    def within(self, limit: float) -> int:
        return min(self.expected, sum(1 for t in self.times_s if t <= limit))


@dataclass
class AckResult:
    """Answers per channel, the response-rate curve and the quartile times."""

    step: str
    window_s: float
    staff: int
    channels: list[ChannelAnswers]

    @property
    def expected(self) -> int:
        return sum(c.expected for c in self.channels)

    def times(self) -> list[float]:
        return sorted(t for c in self.channels for t in c.times_s[: c.expected])

    def curve(self) -> list[tuple[float, float]]:
        """The response-rate curve: ``[(seconds, share answered), ...]``."""
        return response_curve(self.times(), self.expected)

    def time_to(self, share: float) -> float | None:
        return time_to_share(self.times(), self.expected, share)

    @property
    def t25(self) -> float | None:
        return self.time_to(0.25)

    @property
    def t50(self) -> float | None:
        return self.time_to(0.50)

    @property
    def t75(self) -> float | None:
        return self.time_to(0.75)

    def answered_share(self, within: float | None = None) -> float:
        limit = self.window_s if within is None else within
        return sum(c.within(limit) for c in self.channels) / self.expected if self.expected else 0.0

    def verdicts(self, answered: float, within: float | None = None) -> list[Verdict]:
        limit = self.window_s if within is None else within
        groups: dict[str, list[ChannelAnswers]] = {}
        for c in self.channels:
            groups.setdefault(c.target.municipality.code, []).append(c)
        out = []
        for items in groups.values():
            m = items[0].target.municipality
            got, exp = sum(c.within(limit) for c in items), sum(c.expected for c in items)
            share = got / exp if exp else 0.0
            rows = []
            for c in items:
                ch, d = c.target.channel, c.delivery
                if d is None or not d.outcome.reached:
                    rows.append(
                        Row(
                            ch.id,
                            ch.kind,
                            d.outcome.value if d else "skipped",
                            d.reason if d else "",
                        )
                    )
                elif c.within(limit) < c.expected:
                    t50 = time_to_share(c.times_s, c.expected, 0.5)
                    med = f"、50% {t50:.1f} 秒" if t50 is not None else ""
                    med_en = f", 50% at {t50:.1f} s" if t50 is not None else ""
                    rows.append(
                        Row(
                            ch.id,
                            ch.kind,
                            "unanswered",
                            f"応答 {c.within(limit)}/{c.expected}{med} / answered {c.within(limit)}/{c.expected}{med_en}",
                        )
                    )
            harness = any(
                c.delivery is not None and c.delivery.outcome is Outcome.ERROR for c in items
            )
            status = (
                Status.HARNESS
                if harness
                else Status.MET
                if share >= answered - 1e-9
                else Status.MISSED
            )
            out.append(
                Verdict(
                    m.code,
                    m.name,
                    m.name_en,
                    status,
                    f"{limit:g} 秒以内の応答 {got}/{exp}（{percent(share)}、要件 {percent(answered)} 以上）",
                    f"answered within {limit:g} s: {got}/{exp} ({percent(share)}, needs ≥ {percent(answered)})",
                    tuple(rows),
                    {"answered": got, "expected": exp},
                )
            )
        return out

    def event(self) -> AcknowledgementEvent:
        """The journal's ``acknowledgement`` event of this step."""
        chans = []
        for c in self.channels:
            d, t = c.delivery, c.target
            t25, t50, t75 = (time_to_share(c.times_s, c.expected, q / 100) for q in (25, 50, 75))
            chans.append(
                AckChannel(
                    code=t.municipality.code,
                    name=t.municipality.name,
                    channel=t.channel.id,
                    kind=t.channel.kind,
                    outcome=d.outcome.value if d else "skipped",
                    expected=c.expected,
                    answered=len(c.times_s[: c.expected]),
                    times_s=tuple(c.times_s),
                    token=d.token if d else None,
                    t25_s=t25,
                    t50_s=t50,
                    t75_s=t75,
                )
            )
        return AcknowledgementEvent(
            step=self.step,
            window_s=self.window_s,
            staff=self.staff,
            channels=tuple(chans),
            overall=AckOverall(
                expected=self.expected,
                answered=len(self.times()),
                t25_s=self.t25,
                t50_s=self.t50,
                t75_s=self.t75,
                curve=tuple((round(t, 4), round(s, 4)) for t, s in self.curve()),
            ),
        )


async def run_acknowledgement(
    drill: Drill,
    targets: list[Target],
    text: str,
    *,
    window: float,
    staff: int,
    simulated: SimulatedAnswers,
    desk: AnswerDesk,
    taps: list[Callable[[Delivery], None]],
    step: str,
    subject: str = "",
) -> AckResult:
    probes = await asyncio.gather(*(drill.probe(t) for t in targets))
    by_key = {t.key: (t, p, reply_book(p, t)) for t, p in zip(targets, probes, strict=True)}
    ids = [f"staff-{i + 1:03d}" for i in range(staff)]

    def on_delivery(d: Delivery) -> None:
        found = by_key.get(f"{d.municipality_code}/{d.channel_id}")
        if d.step != step or found is None or not d.outcome.reached:
            return
        target, probe, _ = found
        if target.channel.simulated:
            desk.crowd(target, probe, d.token, ids, simulated, note="無事です")

    taps.append(on_delivery)
    started = time.monotonic()
    try:
        sent = await drill.broadcast(
            text + INSTRUCTION, targets, timeout=window, step=step, subject=subject
        )
        delivered = {(d.municipality_code, d.channel_id): d for d in sent.deliveries}
        result = AckResult(
            step,
            window,
            staff,
            [
                ChannelAnswers(t, delivered.get((t.municipality.code, t.channel.id)), staff)
                for t in targets
            ],
        )
        while True:
            complete = _collect(result, by_key)
            if complete or time.monotonic() >= started + window:
                break
            await asyncio.sleep(min(0.1, max(0.0, started + window - time.monotonic())))
    finally:
        taps.remove(on_delivery)
        await desk.close()
    return result


def answer_times(replies: Iterable[Reply], sent: float, window: float) -> list[float]:
    """Seconds from the send (monotonic *sent*) to each answer within *window*, sorted.

    >>> answer_times([Reply("TSG-7K3Q9XW2M4PD", "staff-001", at=11.25, wall=9e9)], 10.0, 5.0)
    [1.25]
    """
    return sorted(round(r.at - sent, 4) for r in replies if 0 <= r.at - sent <= window)


def _collect(result: AckResult, books: dict[str, tuple[Target, Any, ReplyBook]]) -> bool:
    """Refresh every channel's answer times; True when everyone expected has answered."""
    complete = True
    for c in result.channels:
        d = c.delivery
        if d is None or not d.outcome.reached:
            continue
        book = books[c.target.key][2]
        c.times_s = answer_times(book.replies(d.token), sent_mono(d), result.window_s)
        complete &= len(c.times_s) >= c.expected
    return complete
