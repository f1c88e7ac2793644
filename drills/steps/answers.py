"""Answers: collecting them from a probe, and simulated people who give them.

Roll calls and acknowledgements need the far end to answer. A probe that can
collect answers keeps a :class:`probes.replies.ReplyBook` as ``probe.replies``
(fed by its observer). On *simulated* channels, simulated people answer: each
posts ``RE[<token>] <id>`` through the same channel after a delay drawn from
:class:`SimulatedAnswers`, so the answer travels through the simulator's
latency, loss, rate limit and outage like any other message. Live channels
never get simulated answers.

In a scenario::

    simulated={"delay": {"dist": "lognormal", "median": "3s", "sigma": 0.6}, "rate": 0.9}
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from drills.core.delivery import Delivery
from drills.core.registry import Target
from drills.core.requirements import ScenarioMistake
from probes.base import CollectsReplies, DrillMessage, Probe, ProbeError
from probes.replies import ReplyBook, format_reply
from probes.sim.base import LatencySpec

__all__ = ["AnswerDesk", "SimulatedAnswers", "parse_simulated", "reply_book", "sent_mono"]


class SimulatedAnswers(BaseModel):
    """How simulated recipients answer: a delay distribution and the share who answer at all."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    delay: LatencySpec = LatencySpec(dist="lognormal", median=2.0, sigma=0.5)
    rate: float = Field(default=1.0, ge=0.0, le=1.0)


def parse_simulated(value: Any) -> SimulatedAnswers:
    """``simulated=`` from a dict (or None for the defaults); a clear mistake otherwise."""
    if isinstance(value, SimulatedAnswers):
        return value
    try:
        return SimulatedAnswers.model_validate(value or {})
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ScenarioMistake(
            f"simulated= の {where} が正しくありません: {first['msg']}"
            '（例: {"delay": "3s", "rate": 0.9}）',
            f'simulated= has a wrong {where}: {first["msg"]} (e.g. {{"delay": "3s", "rate": 0.9}})',
        ) from None


def sent_mono(d: Delivery) -> float:
    """The send instant on the monotonic clock (converted from wall time for old records)."""
    given = d.extra.get("sent_mono")
    if given is not None:
        return float(given)
    return time.monotonic() - (time.time() - d.sent_at)


def reply_book(probe: Probe, target: Target) -> ReplyBook:
    """The probe's book of answers (wanted from now on), or a mistake: this kind cannot collect them."""
    if not isinstance(probe, CollectsReplies):
        raise ScenarioMistake(
            f"{target.key}（種別 {target.channel.kind}）は返信を受け取れません: "
            "点呼・安否確認には返信を読める種別（webhook など）を使ってください",
            f"{target.key} (kind {target.channel.kind}) cannot collect answers: "
            "use a kind that reads replies (e.g. webhook) for roll calls and acknowledgements",
        )
    probe.replies.want()  # a resting observer looks again, and keeps looking
    return probe.replies


class AnswerDesk:
    """Simulated people answering through simulated channels, on the drill's loop."""

    def __init__(self, rng: random.Random, marker: str) -> None:
        self.rng = rng
        self.marker = marker
        self.failed = 0  # answers the channel refused or lost on the way
        self._tasks: set[asyncio.Task[None]] = set()

    def answer(
        self,
        target: Target,
        probe: Probe,
        token: str,
        responder: str,
        delay: float,
        note: str = "",
    ) -> None:
        """Post *responder*'s answer to *token* after *delay* seconds (simulated channels only)."""
        if not target.channel.simulated:
            raise RuntimeError(f"refusing to simulate an answer on the live channel {target.key}")
        task = asyncio.get_running_loop().create_task(
            self._post(probe, token, responder, delay, note), name=f"answer:{responder}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(
        self, probe: Probe, token: str, responder: str, delay: float, note: str
    ) -> None:
        await asyncio.sleep(delay)
        message = DrillMessage(
            token=token, text=format_reply(token, responder, note), marker=self.marker
        )
        try:
            await probe.send(message)
        except (ProbeError, OSError, TimeoutError):
            self.failed += 1

    def crowd(
        self,
        target: Target,
        probe: Probe,
        token: str,
        ids: list[str],
        answers: SimulatedAnswers,
        extra_delay: float = 0.0,
        note: str = "",
    ) -> int:
        """Schedule answers from *ids*, each answering with chance ``answers.rate``."""
        scheduled = 0
        for responder in ids:
            if self.rng.random() < answers.rate:
                self.answer(
                    target,
                    probe,
                    token,
                    responder,
                    extra_delay + answers.delay.sample(self.rng),
                    note,
                )
                scheduled += 1
        return scheduled

    async def close(self) -> None:
        """Stop answering (the step's window is over)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
