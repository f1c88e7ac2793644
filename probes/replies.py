"""Replies to drill messages: how a recipient answers, and a book of answers seen.

Roll calls (点呼) and acknowledgements (安否確認) ask the far end to *answer*.
An answer is any message, on the same channel, that carries ``RE[<token>]``
followed by who answers — a municipality code, a staff id, a phone number
(ASCII, so it survives any transport's escaping)::

    【訓練】 点呼応答 RE[TSG-7K3Q9XW2M4PD] 131211 受信しました

>>> parse_replies("【訓練】 応答 RE[TSG-7K3Q9XW2M4PD] 131211 受信")
[('TSG-7K3Q9XW2M4PD', '131211')]

An observer that reads the room (or mailbox) hands every text it reads to its
:class:`ReplyBook`; the book keeps the *first* answer of each responder to each
token, and lets a step wait for more. A probe that can collect answers has a
``replies`` attribute holding its book. A step that will read answers says so
first (:meth:`ReplyBook.want`): an observer that rests while nothing is awaited
(the webhook's long-poll) keeps looking from then on.

"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass

from probes.base import Clock

__all__ = ["REPLY_RE", "Reply", "ReplyBook", "format_reply", "parse_replies"]

REPLY_RE = re.compile(r"RE\[(TSG-[0-9A-HJKMNP-TV-Z]{12})\][ \t]*([A-Za-z0-9][A-Za-z0-9_.@+\-]*)")


def format_reply(token: str, responder: str, note: str = "") -> str:
    """The text of an answer from *responder* to the drill message *token*.

    >>> format_reply("TSG-7K3Q9XW2M4PD", "staff-001", "無事です")
    'RE[TSG-7K3Q9XW2M4PD] staff-001 無事です'
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@+\-]*", responder):
        raise ValueError(f"a responder id must be ASCII letters, digits or _.@+-: {responder!r}")
    return f"RE[{token}] {responder} {note}".rstrip()


def parse_replies(text: str) -> list[tuple[str, str]]:
    """Every ``(token, responder)`` answer in *text*, in order of appearance."""
    return [(m.group(1), m.group(2)) for m in REPLY_RE.finditer(text)]


@dataclass(frozen=True, slots=True)
class Reply:
    """One responder's first answer to one drill message, as the observer saw it."""

    token: str
    responder: str
    at: float  # monotonic, when the observer saw it
    wall: float  # wall clock, for humans and for comparing with a Delivery's sent_at


class ReplyBook:
    """Answers seen by an observer, first answer per (token, responder), with waiting."""

    def __init__(self, on_want: Callable[[], None] | None = None) -> None:
        self._by_token: dict[str, dict[str, Reply]] = {}
        self._changed = asyncio.Event()
        self._on_want = on_want  # the observer's wake-up, called when answers become wanted
        self.wanted = False  # a step reads answers from this book (see want)

    def want(self) -> None:
        """A step will read answers: the observer keeps looking from now on (for good)."""
        self.wanted = True
        if self._on_want is not None:
            self._on_want()

    def feed(self, text: str, at: float | None = None) -> int:
        """Record every answer in *text* (seen at monotonic *at*); how many were new."""
        found = parse_replies(text)
        if not found:
            return 0
        seen_at = Clock.monotonic() if at is None else at
        wall = Clock.wall() - (Clock.monotonic() - seen_at)
        new = 0
        for token, responder in found:
            answers = self._by_token.setdefault(token, {})
            if responder not in answers:
                answers[responder] = Reply(token, responder, seen_at, wall)
                new += 1
        if new:
            self._changed.set()
            self._changed = asyncio.Event()
        return new

    def replies(self, token: str) -> list[Reply]:
        """Answers to *token*, in the order they were seen."""
        return sorted(self._by_token.get(token, {}).values(), key=lambda r: r.at)

    async def wait_change(self, timeout: float) -> bool:
        """Wait up to *timeout* s for any new answer; False on timeout."""
        if timeout <= 0:
            return False
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True
