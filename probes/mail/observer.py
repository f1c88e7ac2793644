"""What every mail observer shares: token matching, error bounds, one observer per mailbox.

An observer watches one mailbox for every probe that delivers into it (one
IMAP connection, or one Maildir scan, however many messages are in flight).
Probes announce what they are waiting for with :meth:`MailObserver.expect`
(just before sending) and wait on :meth:`MailObserver.wait`.

Matching (:func:`probes.mail.message.tokens_in_mail`), for IMAP and Maildir
alike: the ``X-Tsunagari-Drill-Token`` header, or — when a sanitising gateway
stripped it — the exact token in the subject, then in the text body. The
sighting's ``extra["matched_by"]`` says which.

Error bound: a message first seen by the look that started at ``t_k`` and was
not seen by the look that started at ``t_{k-1}`` was stored after ``t_{k-1}``
(and after its own send began). So it was seen at most
``seen - max(t_{k-1}, expected_since)`` late; that is the bound reported. The
bound is measured per sighting, so a slow server or a loaded event loop
widens it instead of hiding in the latency.

Trouble: while an observer cannot look at its mailbox (server unreachable,
connection lost, Maildir unreadable) ``trouble`` holds the reason; it clears
only after a complete look, so "not seen" is never claimed for a time nobody
looked. Clean-up removes only messages this observer's probes were waiting
for: another observer of the same mailbox may be waiting for the rest.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from probes.base import DrillMessage, Sighting, Sightings
from probes.mail.message import content_intact, read_content, tokens_in_mail

__all__ = ["Expectation", "MailObserver", "SharedObservers", "stop_task"]


async def stop_task(task: asyncio.Future[Any]) -> None:
    """Cancel *task* and wait until it has finished.

    Unlike ``suppress(BaseException): await task`` this never swallows the
    caller's own cancellation, so a watcher loop cannot outlive its closer.
    """
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # retrieved: asyncio need not log it


@dataclass(frozen=True, slots=True)
class Expectation:
    """A probe waits for *token*, sent no earlier than *since* (monotonic)."""

    since: float
    message: DrillMessage | None = None


class MailObserver(ABC):
    """Base of the IMAP and Maildir observers."""

    def __init__(self) -> None:
        self.sightings = Sightings()
        self.expected: dict[str, Expectation] = {}
        self.wake = asyncio.Event()  # set when a new expectation arrives
        self.users = 0
        self.trouble: str | None = None  # why it cannot look right now (None: it can)

    # ------------------------------------------------------------ probe side

    def expect(self, token: str, since: float, message: DrillMessage | None = None) -> None:
        """Announce a message about to be sent (call before the send starts)."""
        self.expected[token] = Expectation(since, message)
        self.wake.set()

    def forget(self, token: str) -> None:
        self.expected.pop(token, None)

    async def wait(self, token: str) -> Sighting:
        return await self.sightings.wait(token)

    @abstractmethod
    async def start(self) -> None:
        """Begin watching. Raises ObserverFault when the observer cannot look at all."""

    @abstractmethod
    async def aclose(self) -> None:
        """Stop watching and release connections."""

    # ------------------------------------------------------------ watcher side

    def recognise(self, raw: bytes) -> tuple[list[str], str]:
        """The drill token(s) of a message and where they were found (header, subject, body)."""
        return tokens_in_mail(raw)

    def ours(self, token: str) -> bool:
        """Is a probe of this observer waiting for *token* (so clean-up may remove it)?"""
        return token in self.expected

    def bound(self, token: str, seen_at: float, previous_look: float | None) -> float:
        """How late (at most) *token* was seen; see the module docstring."""
        lows = [x for x in (previous_look, self._since(token)) if x is not None]
        return max(0.0, seen_at - max(lows)) if lows else float("inf")

    def _since(self, token: str) -> float | None:
        exp = self.expected.get(token)
        return exp.since if exp is not None else None

    def content_extra(self, token: str, raw: bytes) -> dict[str, Any]:
        """Did the received message read back as sent (subject, body, token)?"""
        exp = self.expected.get(token)
        if exp is None or exp.message is None:
            return {}
        content = read_content(raw)
        return {"content_intact": content_intact(exp.message, content)}

    def record(self, token: str, sighting: Sighting) -> None:
        self.sightings.record(token, sighting)


Obs = TypeVar("Obs", bound=MailObserver)


class SharedObservers(Generic[Obs]):
    """One started observer per key (e.g. host, port, user, mailbox), shared by probes.

    Kept in ``ProbeEnv.shared``; ``ProbeEnv.aclose`` closes what is left.
    """

    def __init__(self) -> None:
        self._observers: dict[Hashable, Obs] = {}
        self._starting: dict[Hashable, asyncio.Task[None]] = {}

    async def acquire(self, key: Hashable, factory: Callable[[], Obs]) -> Obs:
        observer = self._observers.get(key)
        if observer is None:
            observer = factory()
            self._observers[key] = observer
            self._starting[key] = asyncio.ensure_future(observer.start())
        observer.users += 1
        try:
            await asyncio.shield(self._starting[key])
        except BaseException:
            await self.release(key)
            raise
        return observer

    async def release(self, key: Hashable) -> None:
        observer = self._observers.get(key)
        if observer is None:
            return
        observer.users -= 1
        if observer.users <= 0:
            del self._observers[key]
            task = self._starting.pop(key, None)
            if task is not None and not task.done():
                await stop_task(task)
            await observer.aclose()

    def get(self, key: Hashable) -> Obs | None:
        return self._observers.get(key)

    def __len__(self) -> int:
        return len(self._observers)

    async def aclose(self) -> None:
        for key in list(self._observers):
            observer = self._observers.pop(key)
            self._starting.pop(key, None)
            await observer.aclose()
