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
  back-filled through ``/messages`` so nothing is skipped. The first /sync (no
  ``since``: when the probe opens, or first reaches the homeserver after an
  outage at open) records the room's latest events too — a message sent while
  the observer could not look may be visible already — and, when that timeline
  is limited, reads back to the oldest message still awaited.
- While the homeserver is unreachable the observer backs off, but looks again
  as soon as a message begins to be awaited (``ChatProbe``).
- An end-to-end encrypted room (``m.room.encryption`` state) is refused: the
  drill would post plaintext the members' clients flag as unverified, and the
  observer could not read what it sent.
- When the probe opens, ``/account/whoami`` for both tokens: an observer that
  is the sender itself is refused (``ObserverIsSender``); a token that belongs
  to another account than the ``user`` beside it is refused naming both users
  (observer: ``ObserverFault`` ``observer_token_user``; sender: every send
  ``ChannelRejected`` ``sender_token_user``); and the observer's
  ``/joined_rooms`` must hold the room — a non-member's /sync simply never
  shows it, so that is an observer fault (naming the room and the user), not
  a lost message.
- A homeserver that does not answer at open (``request_timeout``) is said once:
  the observer's trouble is set at once and the other open checks (whoami,
  joined_rooms, parking the first /sync) are not waited for, each another
  ``request_timeout``. "Did not answer within N s" (a timeout) and "cannot
  reach" (refused, reset) are told apart.
- Error bound per sighting: the time from the event's ``origin_server_ts``
  (the homeserver's clock, converted with ``Clock.monotonic_from_wall``; NTP
  keeps a real server's clock close to ours) to the moment the observer
  handled the batch — a loaded event loop shows up in it. Without a stamp:
  from when the previous /sync went out (the event was not in that batch).
"""

from __future__ import annotations

import functools
import json
import ssl
import time
from typing import TYPE_CHECKING, Any, Literal
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
    ObserverIsSender,
    ProbeEnv,
)
from probes.chat.base import (
    ChatProbe,
    ChatSettings,
    Throttle,
    Verdict,
    both,
    foreign_answer,
    retry_after_seconds,
)
from probes.faultcodes import http_code, transport_code
from probes.settings import Duration, SecretRef
from probes.sim.base import Simulator

if TYPE_CHECKING:
    from probes.preflight import PreflightReport

__all__ = [
    "MatrixIdentity",
    "MatrixProbe",
    "MatrixSettings",
    "channel_client",
    "message_events",
    "message_texts",
    "observer_not_in_room",
    "send_verdict",
    "token_of_another_user",
    "txn_id",
]

API = "/_matrix/client/v3"
# Errors of a reused connection the server had closed (not of the server being down).
STALE_CONNECTION = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)
# Timeline events per /sync batch before the server marks the timeline "limited".
TIMELINE_LIMIT = 500
# After an initial sync, read back this far before the oldest message still awaited
# (the homeserver's clock may differ from ours).
BACKFILL_MARGIN_S = 60.0


class MatrixIdentity(ChannelSettings):
    """A Matrix account: full user id and an access token reference."""

    user: str = Field(
        pattern=r"^@[^:]+:.+$",
        description="完全なユーザー ID（@名前:サーバ） / the full user id (@name:server)",
    )
    token: SecretRef = Field(
        description="そのアカウントのアクセストークン / the account's access token"
    )


class MatrixObserver(MatrixIdentity):
    """The reading account; may read through another URL (e.g. from inside the LGWAN)."""

    homeserver: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="観測用アカウントが読む URL（省略時は homeserver） / the URL the observer reads through (default: homeserver)",
    )


class MatrixSettings(ChatSettings):
    homeserver: str = Field(
        pattern=r"^https?://",
        description="ホームサーバの URL（https://…） / the homeserver's URL (https://…)",
    )
    sender: MatrixIdentity = Field(
        description="訓練メッセージを送るアカウント（ボット） / the account that sends the drill message (a bot)"
    )
    observer: MatrixObserver | None = Field(
        default=None,
        description="部屋のメンバーとして着信を確かめる別のアカウント。省略すると「受付のみ」 / a second account, a member of the room, that confirms arrival; without it: accepted only",
    )
    # A room id ("!abc:example.lg.jp"; room version 12 ids have no server part) or an alias.
    room: str = Field(
        pattern=r"^(![^\s]+|#[^:\s]+:\S+)$",
        description="部屋 ID（!…）か別名（#名前:サーバ） / the room id (!…) or an alias (#name:server)",
    )
    msgtype: Literal["m.text", "m.notice"] = Field(
        default="m.text", description="メッセージの種類 / the message type"
    )
    sync_timeout: Duration = Field(
        default=30.0, description="/sync の待ち受け時間 / how long one /sync long-poll waits"
    )


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
    'M_UNKNOWN_TOKEN HTTP 401'
    """
    if 200 <= status < 300:
        return None
    errcode, error = _errcode(body)
    if status == 429 or errcode == "M_LIMIT_EXCEEDED":
        default = retry_after_seconds(headers, 1.0)
        ms = body.get("retry_after_ms") if isinstance(body, dict) else None
        seconds = ms / 1000.0 if isinstance(ms, int | float) and ms >= 0 else default
        return Throttle(seconds, code="M_LIMIT_EXCEEDED")
    code = http_code(errcode, status)
    detail = f"{code}: {error}" if error else code
    if status in (401,) or errcode in ("M_UNKNOWN_TOKEN", "M_MISSING_TOKEN"):
        reason = both("送信用アカウントのトークンが拒否されました", "sender token refused", code)
        return ChannelRejected(reason, code=code)
    if status == 403 or errcode == "M_FORBIDDEN":
        ja, en = "送信用アカウントがルームに投稿できません", "the sender may not post in the room"
        return ChannelRejected(both(ja, en, detail), code=code)
    if status in (502, 503, 504):
        return ChannelUnreachable(
            both("ホームサーバーが応答しません", "homeserver unavailable", code), code=code
        )
    reason = both("ホームサーバーが拒否しました", "the homeserver refused", detail)
    return ChannelRejected(reason, code=code, temporary=status >= 500)


def token_of_another_user(role: str, configured: str, whoami: str) -> str:
    """The reason when a token belongs to another account than the registry names.

    >>> token_of_another_user("observer", "@watch:x", "@bot:x").split(" / ")[1]
    'observer.token belongs to @bot:x, not to observer.user @watch:x: give the token of @watch:x (or correct observer.user)'
    """
    return (
        f"{role}.token は {whoami} のトークンで、{role}.user の {configured} のものではありません"
        f"（{configured} のトークンを設定するか、{role}.user を直してください） / "
        f"{role}.token belongs to {whoami}, not to {role}.user {configured}: give the token of "
        f"{configured} (or correct {role}.user)"
    )


def observer_not_in_room(user: str, room_id: str) -> ObserverFault:
    """The fault when the observer has not joined the room (its /sync would never show it)."""
    return ObserverFault(
        f"観測用アカウント {user} がルーム {room_id} に参加していません"
        "（招待して参加させてください） / the observer "
        f"{user} is not a member of room {room_id}: invite it and join",
        code="observer_not_in_room",
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


def message_events(events: Any) -> list[tuple[str, dict[str, Any], int | None]]:
    """(body, facts, origin_server_ts in ms or None) for every ``m.room.message`` event.

    >>> message_events([{"type": "m.room.message", "event_id": "$e", "sender": "@b:x",
    ...                  "origin_server_ts": 1700000000123, "content": {"body": "hi"}}])
    [('hi', {'event_id': '$e', 'sender': '@b:x'}, 1700000000123)]
    """
    out: list[tuple[str, dict[str, Any], int | None]] = []
    if not isinstance(events, list):
        return out
    for ev in events:
        if not isinstance(ev, dict) or ev.get("type") != "m.room.message":
            continue
        content = ev.get("content")
        body = content.get("body") if isinstance(content, dict) else None
        if isinstance(body, str):
            ts = ev.get("origin_server_ts")
            origin = ts if isinstance(ts, int) and not isinstance(ts, bool) and ts > 0 else None
            facts = {"event_id": ev.get("event_id"), "sender": ev.get("sender")}
            out.append((body, facts, origin))
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
    summary = (
        "Matrix: 訓練用ボットとして送り、別アカウントの /sync で着信を確認",
        "Matrix: send as a drill bot, confirm as a second account's /sync",
    )
    Settings = MatrixSettings
    settings: MatrixSettings

    def __init__(self, channel_id: str, settings: ChannelSettings, env: ProbeEnv) -> None:
        super().__init__(channel_id, settings, env)
        self._room_id = self.settings.room if self.settings.room.startswith("!") else None
        self._refusal: ChannelRejected | None = None
        self._filter_id: str | None = None
        self._since: str | None = None
        self._prev_sync_sent: float | None = None  # monotonic: when the previous /sync went out
        self._client: httpx.AsyncClient | None = None
        self._whoami: dict[str, str] = {}  # role → the user its token belongs to (whoami)
        self._observer_down = False  # the observer's homeserver did not answer at open

    @classmethod
    def simulator(cls) -> type[Simulator]:
        from probes.sim.matrix import MatrixSimulator

        return MatrixSimulator

    def confirms(self) -> bool:
        return self.settings.observer is not None

    async def preflight(self) -> PreflightReport:
        """Check the channel without posting (probes.chat.preflight): whoami and joined rooms of both accounts."""
        from probes.chat.checks import MatrixCheck
        from probes.chat.preflight import check_chat

        return await check_chat(self, MatrixCheck(self))

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
        for attempt in (1, 2):
            try:
                resp = await self._http.request(
                    method, url, headers=self._auth(ident), timeout=timeout, **kw
                )
                break
            except STALE_CONNECTION as exc:
                # A kept-alive connection the server had already closed. Every request here
                # is idempotent (sends carry their transaction id), so once more, anew.
                if attempt == 2:
                    raise self._unreachable(exc, url, timeout) from exc
            except httpx.TransportError as exc:
                raise self._unreachable(exc, url, timeout) from exc
        try:
            body = resp.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        return resp.status_code, body, resp.headers

    @staticmethod
    def _unreachable(exc: Exception, url: str, timeout: float) -> ChannelUnreachable:
        host = httpx.URL(url).netloc.decode("ascii", "replace")
        if isinstance(exc, httpx.TimeoutException):  # connected (or trying), but no answer
            ja = f"ホームサーバー {host} が {timeout:g} 秒以内に応答しません"
            en = f"the homeserver {host} did not answer within {timeout:g} s"
        else:
            ja, en = (
                f"ホームサーバー {host} に接続できません",
                f"cannot reach the homeserver {host}",
            )
        return ChannelUnreachable(both(ja, en, exc.__class__.__name__), code=transport_code(exc))

    # ------------------------------------------------------------------ open

    async def open(self) -> None:
        s = self.settings
        encrypted = False
        sender_down: ChannelUnreachable | None = None
        observer_down: ChannelUnreachable | None = None
        try:
            await self._resolve_room()
            encrypted = await self._is_encrypted(s.sender)
        except ChannelUnreachable as exc:
            sender_down = exc  # the send will say so
        if not encrypted and s.observer is not None:
            if sender_down is not None and self._base(s.observer) == s.homeserver:
                observer_down = sender_down
            else:
                try:
                    encrypted = await self._is_encrypted(s.observer)
                except ChannelUnreachable as exc:
                    observer_down = exc
        if encrypted:
            self._refusal = ChannelRejected(
                "暗号化されたルームには訓練メッセージを送信しません（非暗号化ルームを指定してください）"
                " / refusing an end-to-end encrypted room: register an unencrypted drill room",
                code="encrypted_room",
            )
            return
        if observer_down is not None:
            # The observer's homeserver did not answer just now: say so from the start, and
            # spend no request_timeout on each open check (whoami, joined_rooms, first look).
            self._observer_trouble = observer_down.reason
            self._observer_down = True
            self._parked.set()
        if self._refusal is None:
            await super().open()

    async def _identity(self, role: str) -> str | None:
        s = self.settings
        ident: MatrixIdentity | None = s.sender if role == "sender" else s.observer
        if ident is None:
            return None
        try:
            status, body, _ = await self._request(
                "GET", f"{self._base(ident)}{API}/account/whoami", ident, s.request_timeout
            )
        except ChannelUnreachable:
            return None
        user = body.get("user_id") if status == 200 and isinstance(body, dict) else None
        if not isinstance(user, str):
            return None
        self._whoami[role] = user
        return user

    async def check_observer(self) -> None:
        if self._observer_down:
            return  # checked by nobody: the homeserver did not answer at open
        obs = self._observer()
        try:
            await super().check_observer()
        except ObserverIsSender as exc:
            whoami = self._whoami.get("observer")
            if whoami is None or whoami == obs.user:
                raise  # the file itself names the sender as observer
            ja, _, en = token_of_another_user("observer", obs.user, whoami).partition(" / ")
            raise ObserverIsSender(
                f"{self.channel_id}: {ja}（送信者自身のトークンです） / {self.channel_id}: {en} "
                "(that is the sender's own token)",
                code=exc.code,
            ) from None
        whoami = self._whoami.get("observer")
        if whoami is not None and whoami != obs.user:
            raise ObserverFault(
                token_of_another_user("observer", obs.user, whoami), code="observer_token_user"
            )
        whoami = self._whoami.get("sender")
        if whoami is not None and whoami != self.settings.sender.user:
            reason = token_of_another_user("sender", self.settings.sender.user, whoami)
            self._refusal = ChannelRejected(reason, code="sender_token_user")
        if self._room_id is None:
            return
        try:
            status, body, _ = await self._request(
                "GET", f"{self._base(obs)}{API}/joined_rooms", obs, self.settings.request_timeout
            )
        except ChannelUnreachable:
            return  # the first look says so
        joined = body.get("joined_rooms") if status == 200 and isinstance(body, dict) else None
        if isinstance(joined, list) and self._room_id not in joined:
            raise observer_not_in_room(obs.user, self._room_id)

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
        code = http_code(errcode, status)
        reason = both("ルームの別名を解決できません", "cannot resolve the room alias", code)
        self._refusal = ChannelRejected(reason, code=code)

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
        if verdict is None and not isinstance(body, dict):  # a 2xx that is not the homeserver's
            verdict = foreign_answer("the homeserver", status, "", headers)
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
        errcode, error = _errcode(body)
        code = errcode or f"HTTP {status}"
        detail = f"{code}: {error}" if error else code
        user = self._observer().user
        if status == 401 or errcode in ("M_UNKNOWN_TOKEN", "M_MISSING_TOKEN"):
            ja = (
                f"観測用アカウント {user} のトークンが無効です（observer.token を更新してください）"
            )
            en = f"the observer token for {user} is not valid: renew observer.token"
        else:
            ja = (
                f"ホームサーバーが観測用アカウント {user} としての同期を拒否しました: observer.token が"
                f" {user} のものか確認してください"
            )
            en = (
                f"the homeserver refused to sync as {user}: check that observer.token belongs "
                f"to {user}"
            )
        return ObserverFault(both(ja, en, detail), code=code)

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
                raise ChannelUnreachable(
                    f"filter upload failed: HTTP {status}", code=http_code("", status)
                )
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
            # After a failed look, answer at once: the trouble clears as soon as it can.
            wait_ms = 0 if self._observer_trouble is not None else int(s.sync_timeout * 1000)
            params["timeout"] = str(wait_ms)
        else:
            params["timeout"] = "0"
        sent = Clock.monotonic()
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
            return self.look_failed(verdict.seconds if isinstance(verdict, Throttle) else 1.0)
        if status in (401, 403):
            raise self._observer_refused(status, body)
        if status != 200 or not isinstance(body, dict):
            raise ChannelUnreachable(f"sync failed: HTTP {status}", code=http_code("", status))
        room = body.get("rooms", {}).get("join", {}).get(self._room_id, {})
        timeline = room.get("timeline", {}) if isinstance(room, dict) else {}
        # Parked: nothing in this batch was readable before the previous /sync went out.
        after = self._prev_sync_sent if parked else None
        self._record_events(timeline.get("events"), seen_at, after)
        gap = timeline.get("prev_batch") if timeline.get("limited") else None
        if isinstance(gap, str) and parked:
            await self._fill_gap(gap, self._since or "", seen_at, after)
        elif isinstance(gap, str) and (awaited := self.awaited_since()) is not None:
            # An initial sync (first look, e.g. when the far end was down at open) shows
            # only the latest events: read back to the oldest message still awaited.
            await self._fill_gap(gap, "", seen_at, None, oldest=awaited - BACKFILL_MARGIN_S)
        self._since = str(body.get("next_batch") or self._since or "")
        self._prev_sync_sent = sent
        self._parked.set()
        return 0.0

    def _record_events(self, events: Any, seen_at: float, after: float | None) -> None:
        """Record each message with its own bound: since it can first have been visible."""
        for text, facts, origin_ms in message_events(events):
            # The server's own stamp, even when "not in the previous batch" would give a
            # later start: Synapse stamps an event before /sync can serve it, so only
            # origin_server_ts is a start that the server's ground truth agrees with.
            earliest = Clock.monotonic_from_wall(origin_ms / 1000.0) if origin_ms else after
            # No timestamp and no earlier batch: it may have been there since boot.
            bound = max(0.0, seen_at - earliest) if earliest is not None else seen_at
            self.record_text(text, at=seen_at, bound=bound, **facts)

    async def _fill_gap(
        self,
        start: str,
        stop: str,
        seen_at: float,
        after: float | None,
        *,
        oldest: float | None = None,
    ) -> None:
        """Read back what a limited /sync timeline skipped, between *stop* and *start*.

        Without *stop* (after an initial sync): back until an event stamped before
        *oldest* (wall clock), the room's start, or ``request_timeout``.
        """
        obs = self._observer()
        url = f"{self._base(obs)}{self._room_path()}/messages"
        token, deadline = start, time.monotonic() + self.settings.request_timeout
        while token and time.monotonic() < deadline:
            params = {
                "from": token,
                "dir": "b",
                "limit": "100",
                "filter": json.dumps({"types": ["m.room.message"]}),
            }
            if stop:
                params["to"] = stop
            status, body, _ = await self._request(
                "GET", url, obs, self.settings.request_timeout, params=params
            )
            if status != 200 or not isinstance(body, dict):
                return
            chunk = body.get("chunk") or []
            self._record_events(chunk, seen_at, after)
            if oldest is not None and any(
                ms is not None and ms / 1000.0 < oldest for _, _, ms in message_events(chunk)
            ):
                return  # reached messages sent before anything still awaited
            end = body.get("end")
            if not chunk or not isinstance(end, str) or end == token:
                return
            token = end
