"""Roll call (点呼): the metropolitan government asks, every municipality answers.

One message goes to a shared cross-municipality room (``room="東京都/chat"``).
Each participating municipality's observer sees it and answers in the same room
with ``RE[<token>] <団体コード>``. Measured: each municipality's time to answer
(from the roll call's send), the time until *every* municipality had answered,
and who never did within the window.

A municipality with no channel of the room's id (e.g. no ``chat`` when the room
is ``東京都/chat``) has no way to answer there: it is recorded as *unable to take
part* (``able: false`` with the reason, in the event and its verdict), never as
answered.

Answer times are on the monotonic clock: the observer's sighting of the answer
minus the roll call's send (``Delivery.extra["sent_mono"]``), like latencies.

On a simulated room, each participant answers as its own channel would let it:
a municipality whose channel with the same id is down or refused (``outage``,
``reject``, or taken away by an outage step) cannot answer; otherwise it
answers with chance ``(1 - loss) × rate``, after its channel's latency plus a
delay from ``simulated``.

Journal event ``roll_call`` (:class:`drills.core.events.RollCallEvent`)::

    {"v", "step", "scenario", "vantage", "room": "130001/chat", "token", "sent_at", "within_s",
     "delivered": true,
     "municipalities": [{"code", "name", "expected": 1, "answered": 1 | 0, "answered_s": 2.31 | null,
                         "able": true | false, "reason": "" | "<why it cannot answer (ja / en)>"}],
     "all_answered_s": 5.12 | null, "never": ["134210"], "unable": ["131237"]}

(``never``: could answer, did not; ``unable``: has no channel to answer with.)

(``expected``/``answered`` per municipality are what the scorecard and the metrics read.)
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from drills.core.delivery import Delivery, Outcome
from drills.core.events import RollCallEvent, RollCallParticipant
from drills.core.registry import Municipality, Target
from drills.core.requirements import Row, Status, Verdict
from drills.core.runner import Drill
from drills.steps.answers import AnswerDesk, SimulatedAnswers, reply_book, sent_mono
from probes.replies import Reply
from probes.sim.base import SimKnobs

__all__ = ["RollCallResult", "effective_knobs", "run_roll_call"]

INSTRUCTION = (
    "\n応答方法: このメッセージの [ ] 内のトークンを使い「RE[トークン] 団体コード」と返信してください。"
    '\nTo answer: reply "RE[token] municipality-code" with the token in [ ] below.'
)


@dataclass
class RollCallResult:
    """Who answered the roll call, and when (seconds from the send)."""

    step: str
    room: str
    within_s: float
    participants: list[Municipality]
    delivery: Delivery | None
    answered: dict[str, float]
    unable: dict[str, str] = field(default_factory=dict)  # code → why it cannot answer there

    @property
    def never(self) -> list[Municipality]:
        """Participants who could answer but did not within the window."""
        return [
            m
            for m in self.participants
            if m.code not in self.answered and m.code not in self.unable
        ]

    @property
    def all_answered_s(self) -> float | None:
        """Seconds until every participant had answered; None if someone never did (or could not)."""
        if self.never or self.unable or not self.participants:
            return None
        return max(self.answered.values())

    def verdicts(self, within: float | None = None) -> list[Verdict]:
        limit = self.within_s if within is None else within
        d = self.delivery
        kind = d.kind if d is not None else ""
        channel = self.room.split("/", 1)[-1]
        out = []
        for m in self.participants:
            t = self.answered.get(m.code)
            rows: tuple[Row, ...] = ()
            if m.code in self.unable:
                status = Status.MISSED
                rows = (Row(channel, kind, "unable", self.unable[m.code]),)
                ja = f"共有ルームに応答する手段（チャネル {channel}）がなく点呼に参加できません"
                en = f"cannot take part: it has no channel {channel!r} to answer in the shared room"
            elif d is None or not d.outcome.reached:
                status = (
                    Status.HARNESS
                    if d is not None and d.outcome is Outcome.ERROR
                    else Status.MISSED
                )
                why = d.reason if d is not None else ""
                rows = (Row(channel, kind, d.outcome.value if d else "skipped", why),)
                ja, en = (
                    "点呼そのものが共有ルームに届かず",
                    "the roll call itself never reached the shared room",
                )
            elif t is not None and t <= limit:
                status = Status.MET
                ja, en = f"{t:.1f} 秒で応答", f"answered after {t:.1f} s"
            else:
                status = Status.MISSED
                late = f"（{t:.1f} 秒で応答）" if t is not None else ""
                rows = (
                    Row(
                        channel,
                        kind,
                        "unanswered",
                        f"{limit:g} 秒以内に応答なし{late} / no answer within {limit:g} s",
                    ),
                )
                ja, en = f"{limit:g} 秒以内に応答なし", f"no answer within {limit:g} s"
            out.append(Verdict(m.code, m.name, m.name_en, status, ja, en, rows, {"answered_s": t}))
        return out

    def event(self) -> RollCallEvent:
        """The journal's ``roll_call`` event of this step."""
        d = self.delivery
        return RollCallEvent(
            step=self.step,
            room=self.room,
            token=d.token if d else None,
            sent_at=d.sent_at if d else None,
            within_s=self.within_s,
            delivered=bool(d and d.outcome.reached),
            municipalities=tuple(
                RollCallParticipant(
                    code=m.code,
                    name=m.name,
                    expected=1,
                    answered=int(m.code in self.answered),
                    answered_s=self.answered.get(m.code),
                    able=m.code not in self.unable,
                    reason=self.unable.get(m.code, ""),
                )
                for m in self.participants
            ),
            all_answered_s=self.all_answered_s,
        )


def unable_reason(channel_id: str) -> str:
    return (
        f"チャネル {channel_id} が登録されていないため共有ルームで応答できません / "
        f"no channel {channel_id!r} is registered, so it cannot answer in the shared room"
    )


def answer_times(
    replies: Iterable[Reply], sent: float, within: float, codes: set[str]
) -> dict[str, float]:
    """Each responder's first answer, seconds after the send, on the monotonic clock.

    >>> answer_times([Reply("TSG-7K3Q9XW2M4PD", "131211", at=12.5, wall=0.0)], 10.0, 5.0, {"131211"})
    {'131211': 2.5}
    """
    out: dict[str, float] = {}
    for reply in sorted(replies, key=lambda r: r.at):
        elapsed = reply.at - sent
        if reply.responder in codes and 0 <= elapsed <= within:
            out.setdefault(reply.responder, round(elapsed, 4))
    return out


def effective_knobs(drill: Drill, target: Target) -> SimKnobs | None:
    """A simulated channel's knobs as they are now (an outage step may have changed them)."""
    if target.key in drill.sims.settings:
        return drill.sims.simulator_of(target).knobs.get(target.key, target.channel.sim)
    return target.channel.sim


def has_channel(muni: Municipality, channel_id: str) -> bool:
    return any(c.id == channel_id for c in muni.channels)


def _answer_model(
    drill: Drill, muni: Municipality, channel_id: str, rng: random.Random
) -> tuple[float, float]:
    """(chance, extra delay) with which *muni* can answer through its own channel."""
    own = next((c for c in muni.channels if c.id == channel_id), None)
    if own is None:  # no channel of the room's id: no way to answer there
        return 0.0, 0.0
    knobs = effective_knobs(drill, Target(muni, own))
    if knobs is None:  # a live channel of the participant: it answers in person
        return 1.0, 0.0
    if knobs.outage or knobs.reject:
        return 0.0, 0.0
    return 1.0 - knobs.loss, knobs.latency.sample(rng)


async def run_roll_call(
    drill: Drill,
    room: Target,
    participants: list[Municipality],
    text: str,
    *,
    within: float,
    simulated: SimulatedAnswers,
    desk: AnswerDesk,
    step: str,
) -> RollCallResult:
    probe = await drill.probe(room)
    book = reply_book(probe, room)
    posted = await drill.broadcast(text + INSTRUCTION, [room], timeout=within, step=step)
    delivery = posted.deliveries[0] if posted.deliveries else None
    channel_id = room.channel.id
    unable = {
        m.code: unable_reason(channel_id) for m in participants if not has_channel(m, channel_id)
    }
    result = RollCallResult(step, room.key, within, participants, delivery, {}, unable)
    if delivery is None or not delivery.outcome.reached:
        return result
    if room.channel.simulated:
        for m in participants:
            if m.code in unable:
                continue
            chance, extra = _answer_model(drill, m, channel_id, desk.rng)
            if desk.rng.random() < chance * simulated.rate:
                delay = extra + simulated.delay.sample(desk.rng)
                desk.answer(room, probe, delivery.token, m.code, delay, "受信しました・異常なし")
    codes = {m.code for m in participants} - unable.keys()
    sent = sent_mono(delivery)
    deadline = sent + within
    try:
        while True:
            result.answered = answer_times(book.replies(delivery.token), sent, within, codes)
            remaining = deadline - time.monotonic()
            if codes <= result.answered.keys() or remaining <= 0:
                break
            await book.wait_change(remaining)
    finally:
        await desk.close()
    return result
