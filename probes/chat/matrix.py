"""Matrix channel: send as a drill bot, confirm as a second account's /sync.

Client-server API over httpx (spec: https://spec.matrix.org/v1.11/client-server-api/).
Registry example::

    - id: chat-main
      kind: matrix
      homeserver: https://chat.example.lg.jp
      sender: {user: "@drill-bot:example.lg.jp", token: env:ADACHI_MATRIX_TOKEN}
      observer: {user: "@drill-watch:example.lg.jp", token: env:ADACHI_MATRIX_WATCH}
      room: "!abc:example.lg.jp"          # or an alias, "#bousai:example.lg.jp"

- Sending uses ``PUT /rooms/{room}/send/m.room.message/{txnId}`` with a
  transaction id derived from the drill token, so a retried send (after a
  rate limit or a lost response) can never post the message twice.
- ``M_LIMIT_EXCEEDED`` (HTTP 429) is honoured: wait ``retry_after_ms`` (or
  the Retry-After header) and resend with the same transaction id.
- The observer parks a ``/sync`` long-poll with a filter that admits only
  ``m.room.message`` events of the drill room, and re-arms it after every
  batch; a ``limited`` timeline (more events than the filter's limit) is
  back-filled through ``/messages`` so nothing is skipped.
- An end-to-end encrypted room (``m.room.encryption`` state) is refused: the
  drill would post plaintext the members' clients flag as unverified, and the
  observer could not read what it sent.
"""

from __future__ import annotations

import functools
import json
import ssl
import time
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import Field

from probes.base import (
    Accepted,
    ChannelRejected,
    ChannelSettings,
    ChannelUnreachable,
    Clock,
    DrillMessage,
    ObserverFault,
    ProbeEnv,
)
from probes.chat.base import ChatProbe, ChatSettings, Throttle, Verdict, retry_after_seconds
from probes.settings import Duration, SecretRef
from probes.sim.base import Simulator

__all__ = [
    "MatrixIdentity",
    "MatrixProbe",
    "MatrixSettings",
    "channel_client",
    "message_texts",
    "send_verdict",
    "txn_id",
]

API = "/_matrix/client/v3"
# Timeline events per /sync batch before the server marks the timeline "limited".
TIMELINE_LIMIT = 500


class MatrixIdentity(ChannelSettings):
    """A Matrix account: full user id and an access token reference."""

    user: str = Field(pattern=r"^@[^:]+:.+$")
    token: SecretRef


class MatrixObserver(MatrixIdentity):
    """The reading account; may read through another URL (e.g. from inside the LGWAN)."""

    homeserver: str | None = Field(default=None, pattern=r"^https?://")


class MatrixSettings(ChatSettings):
    homeserver: str = Field(pattern=r"^https?://")
    sender: MatrixIdentity
    observer: MatrixObserver | None = None
    # A room id ("!abc:example.lg.jp"; room version 12 ids have no server part) or an alias.
    room: str = Field(pattern=r"^(![^\s]+|#[^:\s]+:\S+)$")
    msgtype: Literal["m.text", "m.notice"] = "m.text"
    sync_timeout: Duration = 30.0


# --------------------------------------------------------------------------- pure parts


def txn_id(token: str) -> str:
    """The transaction id for a drill message: the same for every retry of that message.

    >>> txn_id("TSG-7K3Q9XW2M4PD")
    'tsunagari.TSG-7K3Q9XW2M4PD'
    """
    return f"tsunagari.{token}"


def _errcode(body: Any) -> tuple[str, str]:
    if isinstance(body, dict):
        return str(body.get("errcode", "")), str(body.get("error", ""))[:200]
    return "", ""


def send_verdict(status: int, body: Any, headers: Any = None) -> Verdict:
    """What a send response means: None (accepted), a Throttle, or the fault to raise.

    >>> send_verdict(429, {"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 1500})
    Throttle(seconds=1.5, code='M_LIMIT_EXCEEDED')
    >>> send_verdict(401, {"errcode": "M_UNKNOWN_TOKEN"}).code
    'M_UNKNOWN_TOKEN'
    """
    if 200 <= status < 300:
        return None
    errcode, error = _errcode(body)
    if status == 429 or errcode == "M_LIMIT_EXCEEDED":
        default = retry_after_seconds(headers, 1.0)
        ms = body.get("retry_after_ms") if isinstance(body, dict) else None
        seconds = ms / 1000.0 if isinstance(ms, int | float) and ms >= 0 else default
        return Throttle(seconds, code="M_LIMIT_EXCEEDED")
    code = errcode or f"HTTP {status}"
    if status in (401,) or errcode in ("M_UNKNOWN_TOKEN", "M_MISSING_TOKEN"):
        return ChannelRejected(
            f"送信用アカウントのトークンが拒否されました / sender token refused ({code})", code=code
        )
    if status == 403 or errcode == "M_FORBIDDEN":
        return ChannelRejected(
            f"送信用アカウントがルームに投稿できません / sender may not post in the room "
            f"({code}: {error})",
            code=code,
        )
    if status in (502, 503, 504):
        return ChannelUnreachable(f"ホームサーバーが応答しません / homeserver unavailable ({code})")
    return ChannelRejected(
        f"ホームサーバーが拒否しました / homeserver refused ({code}: {error})",
        code=code,
        temporary=status >= 500,
    )


def message_texts(events: Any) -> list[tuple[str, dict[str, Any]]]:
    """(body, facts) for every ``m.room.message`` event in a timeline list.

    >>> message_texts([{"type": "m.room.message", "event_id": "$e", "sender": "@b:x",
    ...                 "content": {"body": "hi"}}])
    [('hi', {'event_id': '$e', 'sender': '@b:x'})]
    """
    out: list[tuple[str, dict[str, Any]]] = []
    if not isinstance(events, list):
        return out
    for ev in events:
        if not isinstance(ev, dict) or ev.get("type") != "m.room.message":
            continue
        content = ev.get("content")
        body = content.get("body") if isinstance(content, dict) else None
        if isinstance(body, str):
            out.append((body, {"event_id": ev.get("event_id"), "sender": ev.get("sender")}))
    return out


def room_filter(room_id: str) -> dict[str, Any]:
    """A /sync filter admitting only the drill room's messages (no presence, state, receipts)."""
    return {
        "presence": {"types": []},
        "account_data": {"types": []},
        "room": {
            "rooms": [room_id],
            "timeline": {"types": ["m.room.message"], "limit": TIMELINE_LIMIT},
            "state": {"types": []},
            "ephemeral": {"types": []},
            "account_data": {"types": []},
        },
    }


@functools.cache
def _tls() -> ssl.SSLContext:
    # Loading the CA store costs ~15 ms of CPU; do it once, not once per channel.
    return ssl.create_default_context()


def channel_client() -> httpx.AsyncClient:
    """The httpx client of one Matrix channel (closed with the probe).

    One small pool per channel, not one shared pool: httpcore's pool scans every
    connection on each request, which costs milliseconds of CPU per request once a
    drill holds hundreds of parked /sync long-polls.
    """
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=8),
        timeout=httpx.Timeout(30.0),
        verify=_tls(),
        trust_env=False,
    )


# --------------------------------------------------------------------------- probe


class MatrixProbe(ChatProbe):
    """Sends with a transaction id; sees arrival through a second account's /sync."""

    kind = "matrix"
    Settings = MatrixSettings
    settings: MatrixSettings

    def __init__(self, channel_id: str, settings: ChannelSettings, env: ProbeEnv) -> None:
        super().__init__(channel_id, settings, env)
        self._room_id = self.settings.room if self.settings.room.startswith("!") else None
        self._refusal: ChannelRejected | None = None
        self._filter_id: str | None = None
        self._since: str | None = None
        self._last_look_ended = 0.0
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def simulator(cls) -> type[Simulator]:
        from probes.sim.matrix import MatrixSimulator

        return MatrixSimulator

    def confirms(self) -> bool:
        return self.settings.observer is not None

    # ------------------------------------------------------------------ http

    @property
    def _http(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            self._client = channel_client()
        return self._client

    async def _close_clients(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @staticmethod
    def _auth(ident: MatrixIdentity) -> dict[str, str]:
        return {"Authorization": f"Bearer {ident.token.reveal()}"}

    def _room_path(self) -> str:
        assert self._room_id is not None
        return f"{API}/rooms/{quote(self._room_id, safe='')}"

    async def _request(
        self, method: str, url: str, ident: MatrixIdentity, timeout: float, **kw: Any
    ) -> tuple[int, Any, httpx.Headers]:
        try:
            resp = await self._http.request(
                method, url, headers=self._auth(ident), timeout=timeout, **kw
            )
        except httpx.TransportError as exc:
            raise ChannelUnreachable(
                f"ホームサーバーに接続できません / homeserver unreachable: {exc.__class__.__name__}"
            ) from exc
        try:
            body = resp.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        return resp.status_code, body, resp.headers

    # ------------------------------------------------------------------ open

    async def open(self) -> None:
        s = self.settings
        try:
            await self._resolve_room()
            encrypted = await self._is_encrypted(s.sender)
            if not encrypted and s.observer is not None:
                encrypted = await self._is_encrypted(s.observer)
        except ChannelUnreachable:
            encrypted = False  # the send will say so
        if encrypted:
            self._refusal = ChannelRejected(
                "暗号化されたルームには訓練メッセージを送信しません（非暗号化ルームを指定してください）"
                " / refusing an end-to-end encrypted room: register an unencrypted drill room",
                code="encrypted_room",
            )
            return
        if self._refusal is None:
            await super().open()

    async def _resolve_room(self) -> None:
        if self._room_id is not None:
            return
        alias = quote(self.settings.room, safe="")
        url = f"{self.settings.homeserver}{API}/directory/room/{alias}"
        status, body, _ = await self._request(
            "GET", url, self.settings.sender, self.settings.request_timeout
        )
        if status == 200 and isinstance(body, dict) and isinstance(body.get("room_id"), str):
            self._room_id = body["room_id"]
            return
        errcode, _ = _errcode(body)
        self._refusal = ChannelRejected(
            f"ルームの別名を解決できません / cannot resolve room alias ({errcode or status})",
            code=errcode or str(status),
        )

    async def _is_encrypted(self, ident: MatrixIdentity) -> bool:
        if self._room_id is None:
            return False
        base = self._base(ident)
        url = f"{base}{self._room_path()}/state/m.room.encryption/"
        status, body, _ = await self._request("GET", url, ident, self.settings.request_timeout)
        return status == 200 and isinstance(body, dict) and "algorithm" in body

    def _base(self, ident: MatrixIdentity) -> str:
        if isinstance(ident, MatrixObserver) and ident.homeserver:
            return ident.homeserver
        return self.settings.homeserver

    # ------------------------------------------------------------------ send

    async def _attempt(self, message: DrillMessage) -> Accepted | Throttle:
        if self._refusal is not None:
            raise self._refusal
        if self._room_id is None:
            await self._resolve_room()
            if self._refusal is not None:
                raise self._refusal
        s = self.settings
        url = f"{s.homeserver}{self._room_path()}/send/m.room.message/{txn_id(message.token)}"
        content = {"msgtype": s.msgtype, "body": message.render()}
        status, body, headers = await self._request(
            "PUT", url, s.sender, s.request_timeout, json=content
        )
        verdict = send_verdict(status, body, headers)
        if verdict is None:
            event_id = body.get("event_id") if isinstance(body, dict) else None
            return Accepted(at=Clock.monotonic(), provider_id=event_id, detail=f"HTTP {status}")
        if isinstance(verdict, Throttle):
            return verdict
        raise verdict

    # ------------------------------------------------------------------ observe

    def _observer(self) -> MatrixObserver:
        assert self.settings.observer is not None
        return self.settings.observer

    def _observer_refused(self, status: int, body: Any) -> ObserverFault:
        errcode, _ = _errcode(body)
        return ObserverFault(
            f"観測用アカウントが同期できません / observer cannot sync ({errcode or status})",
            code=errcode or str(status),
        )

    async def _ensure_filter(self) -> str:
        if self._filter_id is not None:
            return self._filter_id
        obs = self._observer()
        url = f"{self._base(obs)}{API}/user/{quote(obs.user, safe='')}/filter"
        status, body, _ = await self._request(
            "POST", url, obs, self.settings.request_timeout, json=room_filter(self._room_id or "")
        )
        if status != 200 or not isinstance(body, dict) or "filter_id" not in body:
            if status in (502, 503, 504):
                raise ChannelUnreachable(f"filter upload failed: HTTP {status}")
            raise self._observer_refused(status, body)
        self._filter_id = str(body["filter_id"])
        return self._filter_id

    async def _look(self) -> float | None:
        if self._room_id is None:
            await self._resolve_room()
            if self._room_id is None:
                raise ObserverFault("ルームが見つかりません / room not found", code="room")
        obs = self._observer()
        s = self.settings
        params = {"filter": await self._ensure_filter()}
        parked = self._since is not None
        if parked:
            params["since"] = self._since or ""
            params["timeout"] = str(int(s.sync_timeout * 1000))
        else:
            params["timeout"] = "0"
        rearm_gap = Clock.monotonic() - self._last_look_ended if self._last_look_ended else 0.0
        status, body, headers = await self._request(
            "GET",
            f"{self._base(obs)}{API}/sync",
            obs,
            s.sync_timeout + s.request_timeout,
            params=params,
        )
        seen_at = Clock.monotonic()
        if status == 429:
            verdict = send_verdict(status, body, headers)
            return verdict.seconds if isinstance(verdict, Throttle) else 1.0
        if status in (401, 403):
            raise self._observer_refused(status, body)
        if status != 200 or not isinstance(body, dict):
            raise ChannelUnreachable(f"sync failed: HTTP {status}")
        room = body.get("rooms", {}).get("join", {}).get(self._room_id, {})
        timeline = room.get("timeline", {}) if isinstance(room, dict) else {}
        # Parked: the server answered as the event arrived; late by at most the re-arm gap.
        bound = 0.002 + rearm_gap if parked else 0.0
        for text, facts in message_texts(timeline.get("events")):
            self.record_text(text, at=seen_at, bound=bound, **facts)
        if parked and timeline.get("limited") and isinstance(timeline.get("prev_batch"), str):
            await self._fill_gap(timeline["prev_batch"], self._since or "", seen_at, bound)
        self._since = str(body.get("next_batch") or self._since or "")
        self._last_look_ended = Clock.monotonic()
        self._parked.set()
        return 0.0

    async def _fill_gap(self, start: str, stop: str, seen_at: float, bound: float) -> None:
        """Read back what a limited /sync timeline skipped, between *stop* and *start*."""
        obs = self._observer()
        url = f"{self._base(obs)}{self._room_path()}/messages"
        token, deadline = start, time.monotonic() + self.settings.request_timeout
        while token and time.monotonic() < deadline:
            params = {
                "from": token,
                "to": stop,
                "dir": "b",
                "limit": "100",
                "filter": json.dumps({"types": ["m.room.message"]}),
            }
            status, body, _ = await self._request(
                "GET", url, obs, self.settings.request_timeout, params=params
            )
            if status != 200 or not isinstance(body, dict):
                return
            chunk = body.get("chunk") or []
            for text, facts in message_texts(chunk):
                self.record_text(text, at=seen_at, bound=bound, **facts)
            end = body.get("end")
            if not chunk or not isinstance(end, str) or end == token:
                return
            token = end
