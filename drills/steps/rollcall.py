"""Roll call (点呼): the metropolitan government asks, every municipality answers.

One message goes to a shared cross-municipality room (``room="東京都/chat"``).
Each participating municipality's observer sees it and answers in the same room
with ``RE[<token>] <団体コード>``. Measured: each municipality's time to answer
(from the roll call's send), the time until *every* municipality had answered,
and who never did within the window.

On a simulated room, each participant answers as its own channel would let it:
a municipality whose channel with the same id is down or refused (``outage``,
``reject``, or taken away by an outage step) cannot answer; otherwise it
answers with chance ``(1 - loss) × rate``, after its channel's latency plus a
delay from ``simulated``.

Journal event ``roll_call``::

    {"step", "scenario", "vantage", "room": "130001/chat", "token", "sent_at", "within_s",
     "delivered": true,
     "municipalities": [{"code", "name", "expected": 1, "answered": 1 | 0, "answered_s": 2.31 | null}],
     "all_answered_s": 5.12 | null, "never": ["134210"]}

(``expected``/``answered`` per municipality are what the scorecard and the metrics read.)
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

from drills.delivery import Delivery, Outcome
from drills.registry import Municipality, Target
from drills.requirements import Row, Status, Verdict
from drills.runner import Drill
from drills.steps.answers import AnswerDesk, SimulatedAnswers, reply_book
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

    @property
    def never(self) -> list[Municipality]:
        """Participants who did not answer within the window."""
        return [m for m in self.participants if m.code not in self.answered]

    @property
    def all_answered_s(self) -> float | None:
        """Seconds until every participant had answered; None if someone never did."""
        if self.never or not self.participants:
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
            if d is None or not d.outcome.reached:
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

    def event(self) -> dict[str, Any]:
        d = self.delivery
        return {
            "step": self.step,
            "room": self.room,
            "token": d.token if d else None,
            "sent_at": d.sent_at if d else None,
            "within_s": self.within_s,
            "delivered": bool(d and d.outcome.reached),
            "municipalities": [
                {
                    "code": m.code,
                    "name": m.name,
                    "expected": 1,
                    "answered": int(m.code in self.answered),
                    "answered_s": self.answered.get(m.code),
                }
                for m in self.participants
            ],
            "all_answered_s": self.all_answered_s,
            "never": [m.code for m in self.never],
        }


def effective_knobs(drill: Drill, target: Target) -> SimKnobs | None:
    """A simulated channel's knobs as they are now (an outage step may have changed them)."""
    if target.key in drill.sims.settings:
        return drill.sims.simulator_of(target).knobs.get(target.key, target.channel.sim)
    return target.channel.sim


def _answer_model(
    drill: Drill, muni: Municipality, channel_id: str, rng: random.Random
) -> tuple[float, float]:
    """(chance, extra delay) with which *muni* can answer through its own channel."""
    own = next((c for c in muni.channels if c.id == channel_id), None)
    if own is None:
        return 1.0, 0.0
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
    sent = await drill.broadcast(text + INSTRUCTION, [room], timeout=within, step=step)
    delivery = sent.deliveries[0] if sent.deliveries else None
    result = RollCallResult(step, room.key, within, participants, delivery, {})
    if delivery is None or not delivery.outcome.reached:
        return result
    if room.channel.simulated:
        for m in participants:
            chance, extra = _answer_model(drill, m, room.channel.id, desk.rng)
            if desk.rng.random() < chance * simulated.rate:
                delay = extra + simulated.delay.sample(desk.rng)
                desk.answer(room, probe, delivery.token, m.code, delay, "受信しました・異常なし")
    codes = {m.code for m in participants}
    deadline = delivery.sent_at + within
    while True:
        for reply in book.replies(delivery.token):
            elapsed = reply.wall - delivery.sent_at
            if reply.responder in codes and elapsed <= within:
                result.answered.setdefault(reply.responder, round(elapsed, 4))
        remaining = deadline - time.time()
        if codes <= result.answered.keys() or remaining <= 0:
            break
        await book.wait_change(remaining)
    await desk.close()
    return result
