"""Generic webhook channel: POST a message to a URL; optionally read it back.

Covers chat tools that offer only an incoming webhook (many LGWAN chat tools).
Registry example::

    - id: chat-lgwan
      kind: webhook
      url: https://chat.example.lg.jp/hooks/abc
      format: json            # or form
      field: text
      auth: env:CHIYODA_HOOK_TOKEN        # optional, sent as Bearer
      observer:                           # optional; without it: accepted only
        url: https://chat.example.lg.jp/rooms/abc/messages
        auth: env:CHIYODA_READ_TOKEN
        mode: longpoll                    # or poll (every ``interval``)
        interval: 500ms

The observer reads the response body as text and matches drill tokens in it,
so any read-back endpoint that echoes messages works in ``poll`` mode.
``longpoll`` speaks the simulator's cursor protocol (``after``/``wait``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, Literal

import aiohttp
from pydantic import Field

from probes.base import (
    Accepted,
    ChannelRejected,
    ChannelSettings,
    ChannelUnreachable,
    Clock,
    DrillMessage,
    ObserverFault,
    Probe,
    Sighting,
    Sightings,
    find_tokens,
)
from probes.replies import ReplyBook
from probes.settings import Duration, SecretRef
from probes.sim.base import Simulator

__all__ = ["WebhookProbe", "WebhookSettings", "retry_after_seconds"]


class WebhookObserver(ChannelSettings):
    url: str
    auth: SecretRef | None = None
    mode: Literal["poll", "longpoll"] = "poll"
    interval: Duration = 0.5


class WebhookSettings(ChannelSettings):
    url: str
    format: Literal["json", "form"] = "json"
    field: str = "text"
    auth: SecretRef | None = None
    observer: WebhookObserver | None = None
    max_retries: int = Field(default=5, ge=0, le=20)
    request_timeout: Duration = 10.0


def retry_after_seconds(headers: Any, default: float = 1.0) -> float:
    """Seconds to wait from a Retry-After header (seconds form), else *default*."""
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default


class WebhookProbe(Probe):
    """Posts to an incoming webhook; confirms by reading the room back."""

    kind = "webhook"
    Settings = WebhookSettings
    settings: WebhookSettings

    def __init__(self, channel_id: str, settings: ChannelSettings, env: Any) -> None:
        super().__init__(channel_id, settings, env)
        self.sightings = Sightings()
        self.replies = ReplyBook()  # answers (RE[token] who) seen by the observer
        self._reader: asyncio.Task[None] | None = None
        self._parked = asyncio.Event()

    @classmethod
    def simulator(cls) -> type[Simulator]:
        from probes.sim.chat import ChatSimulator

        return ChatSimulator

    def confirms(self) -> bool:
        return self.settings.observer is not None

    def _headers(self, ref: SecretRef | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {ref.reveal()}"} if ref is not None else {}

    async def open(self) -> None:
        if self.settings.observer is not None and self._reader is None:
            self._reader = asyncio.create_task(self._read_loop(self.settings.observer))
            # Park the first read before anything is sent; a failed login surfaces here.
            await asyncio.wait(
                [self._reader, asyncio.ensure_future(self._parked.wait())],
                return_when=asyncio.FIRST_COMPLETED,
                timeout=self.settings.request_timeout,
            )

    async def send(self, message: DrillMessage) -> Accepted:
        s = self.settings
        body = message.render()
        headers = self._headers(s.auth)
        throttled = 0
        http = self.env.http()
        timeout = aiohttp.ClientTimeout(total=s.request_timeout)
        while True:
            try:
                if s.format == "json":
                    resp_cm = http.post(
                        s.url, json={s.field: body}, headers=headers, timeout=timeout
                    )
                else:
                    resp_cm = http.post(
                        s.url, data={s.field: body}, headers=headers, timeout=timeout
                    )
                async with resp_cm as resp:
                    text = await resp.text()
                    status = resp.status
                    resp_headers = resp.headers
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                raise ChannelUnreachable(f"webhook unreachable: {exc.__class__.__name__}") from exc
            if status == 429 and throttled < s.max_retries:
                throttled += 1
                await asyncio.sleep(retry_after_seconds(resp_headers))
                continue
            if 200 <= status < 300:
                return Accepted(at=Clock.monotonic(), detail=f"HTTP {status}", throttled=throttled)
            raise ChannelRejected(
                f"HTTP {status}: {_error_text(text)}",
                code=str(status),
                temporary=status == 429 or status >= 500,
            )

    async def observe(self, message: DrillMessage) -> Sighting:
        return await self.sightings.wait(message.token)

    async def _read_loop(self, obs: WebhookObserver) -> None:
        http = self.env.http()
        cursor = 0
        first = True
        try:
            while True:
                params: dict[str, str] = {}
                if obs.mode == "longpoll":
                    params = {"after": str(cursor), "wait": "25" if not first else "0"}
                timeout = aiohttp.ClientTimeout(total=60)
                try:
                    async with http.get(
                        obs.url, params=params, headers=self._headers(obs.auth), timeout=timeout
                    ) as resp:
                        if resp.status in (401, 403):
                            raise ObserverFault(f"observer login refused (HTTP {resp.status})")
                        if resp.status >= 400:
                            raise aiohttp.ClientResponseError(
                                resp.request_info, (), status=resp.status
                            )
                        text = await resp.text()
                except (aiohttp.ClientError, TimeoutError):
                    # The far end is down: nothing can be seen; try again shortly.
                    self._parked.set()
                    await asyncio.sleep(max(obs.interval, 0.2))
                    continue
                seen_at = Clock.monotonic()
                if obs.mode == "longpoll":
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        cursor = int(json.loads(text)["cursor"])
                for token in find_tokens(text):
                    bound = 0.005 if obs.mode == "longpoll" else obs.interval
                    self.sightings.record(token, Sighting(at=seen_at, error_bound_s=bound))
                self.replies.feed(text, seen_at)
                if first:
                    first = False
                    self._parked.set()
                    if obs.mode == "longpoll":
                        continue
                if obs.mode == "poll":
                    await asyncio.sleep(obs.interval)
        except ObserverFault as exc:
            self.sightings.fail(exc)
            self._parked.set()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None


def _error_text(text: str) -> str:
    with contextlib.suppress(ValueError, AttributeError):
        data = json.loads(text)
        if isinstance(data, dict) and "error" in data:
            return str(data["error"])
    return text[:200]
