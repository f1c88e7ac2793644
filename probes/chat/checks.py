"""The read-only calls of each chat kind's preflight (the phases: :mod:`probes.chat.preflight`)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from slack_sdk.errors import SlackApiError

from probes.base import ChannelRejected, ObserverFault, ObserverIsSender, ProbeError
from probes.chat.base import Throttle
from probes.chat.lineworks import lineworks_verdict, monitoring_window
from probes.chat.matrix import API, observer_not_in_room, send_verdict, token_of_another_user
from probes.chat.mattermost import mattermost_verdict
from probes.chat.preflight import (
    ChatCheck,
    as_fault,
    credential_refused,
    foreign,
    json_object,
    throttled,
)
from probes.chat.slack import api_error_verdict
from probes.chat.teams import graph_verdict

if TYPE_CHECKING:
    from probes.chat.lineworks import LineWorksProbe
    from probes.chat.matrix import MatrixProbe
    from probes.chat.mattermost import MattermostProbe
    from probes.chat.slack import SlackProbe
    from probes.chat.teams import TeamsProbe

__all__ = ["LineWorksCheck", "MatrixCheck", "MattermostCheck", "SlackCheck", "TeamsCheck"]


# --------------------------------------------------------------------------- matrix


class MatrixCheck(ChatCheck):
    """Matrix: ``whoami`` for both tokens, ``joined_rooms`` for both, no encrypted room."""

    def __init__(self, probe: MatrixProbe) -> None:
        self.probe = probe

    def endpoints(self) -> list[tuple[str, str]]:
        s = self.probe.settings
        out = [("homeserver", s.homeserver)]
        if s.observer is not None and s.observer.homeserver:
            out.append(("observer_homeserver", s.observer.homeserver))
        return out

    async def _get(self, role: str, path: str) -> tuple[int, Any]:

        p = self.probe
        ident = p.settings.sender if role == "sender" else p._observer()
        url = f"{p._base(ident)}{API}{path}"
        status, body, _ = await p._request("GET", url, ident, p.settings.request_timeout)
        return status, body

    async def sender(self) -> str | None:

        status, body = await self._get("sender", "/account/whoami")
        user = body.get("user_id") if status == 200 and isinstance(body, dict) else None
        if not isinstance(user, str):
            raise as_fault("Matrix", send_verdict(status, body) or foreign(status), False)
        configured = self.probe.settings.sender.user
        if user != configured:
            reason = token_of_another_user("sender", configured, user)
            raise ChannelRejected(reason, code="sender_token_user")
        return user

    async def sender_read(self) -> str:
        p = self.probe
        await p._resolve_room()
        if p._refusal is not None:
            raise p._refusal
        assert p._room_id is not None
        if not await self._joined("sender"):
            raise ChannelRejected(
                f"送信用アカウント {p.settings.sender.user} がルーム {p._room_id} に参加していません"
                f"（招待して参加させてください） / the sender {p.settings.sender.user} is not a "
                f"member of room {p._room_id}: invite it and join",
                code="sender_not_in_room",
            )
        if await p._is_encrypted(p.settings.sender):
            raise ChannelRejected(
                "暗号化されたルームには訓練メッセージを送信しません（非暗号化ルームを指定してください）"
                " / refusing an end-to-end encrypted room: register an unencrypted drill room",
                code="encrypted_room",
            )
        return p._room_id

    async def _joined(self, role: str) -> bool:

        status, body = await self._get(role, "/joined_rooms")
        joined = body.get("joined_rooms") if status == 200 and isinstance(body, dict) else None
        if not isinstance(joined, list):
            if role == "observer":
                raise credential_refused(status, self.probe._observer_refused(status, body))
            fault = as_fault("Matrix", send_verdict(status, body) or foreign(status), False)
            raise credential_refused(status, fault)
        return self.probe._room_id in joined

    async def observer(self) -> str | None:

        p = self.probe
        obs = p._observer()
        status, body = await self._get("observer", "/account/whoami")
        user = body.get("user_id") if status == 200 and isinstance(body, dict) else None
        if not isinstance(user, str):
            raise p._observer_refused(status, body)
        if user != obs.user:
            reason = token_of_another_user("observer", obs.user, user)
            if user == p.settings.sender.user:  # the sender's own token in observer.token
                raise ObserverIsSender(reason, code="observer_is_sender")
            raise ObserverFault(reason, code="observer_token_user")
        return user

    async def observer_read(self) -> str:

        p = self.probe
        if p._room_id is None:
            await p._resolve_room()
        assert p._room_id is not None
        if not await self._joined("observer"):
            raise observer_not_in_room(p._observer().user, p._room_id)
        return p._room_id


# --------------------------------------------------------------------------- slack


class SlackCheck(ChatCheck):
    """Slack: ``auth.test`` and ``conversations.info`` (``is_member``) for both tokens."""

    def __init__(self, probe: SlackProbe) -> None:
        self.probe = probe

    def endpoints(self) -> list[tuple[str, str]]:
        return [("api", self.probe.settings.base_url)]

    async def _call(self, role: str, method: str, **kw: Any) -> dict[str, Any]:

        s = self.probe.settings
        token = s.bot_token if role == "sender" else s.observer_token
        assert token is not None
        try:
            return await self.probe._call(token, method, **kw)
        except SlackApiError as exc:
            fault = as_fault("Slack", api_error_verdict(exc), role == "observer")
            status = int(getattr(exc.response, "status_code", 0) or 0)
            error = str(exc.response.get("error") or "") if exc.response is not None else ""
            raise credential_refused(status, fault, error) from exc

    async def sender(self) -> str | None:
        return str((await self._call("sender", "auth.test")).get("user_id") or "") or None

    async def _member(self, role: str) -> str:
        channel = self.probe.settings.channel
        info = (await self._call(role, "conversations.info", channel=channel)).get("channel")
        if not isinstance(info, dict) or not info.get("is_member"):
            who = "ボット" if role == "sender" else "観測用アカウント"
            fault = ChannelRejected if role == "sender" else ObserverFault
            raise fault(
                f"{who}がチャンネル {channel} に参加していません（招待してください） / the "
                f"{'bot' if role == 'sender' else 'observer'} is not a member of channel "
                f"{channel}: invite it",
                code="not_in_channel",
            )
        return f"#{info.get('name') or channel}"

    async def sender_read(self) -> str:
        return await self._member("sender")

    async def observer(self) -> str | None:
        return str((await self._call("observer", "auth.test")).get("user_id") or "") or None

    async def observer_read(self) -> str:
        return await self._member("observer")


# --------------------------------------------------------------------------- mattermost


class MattermostCheck(ChatCheck):
    """Mattermost: ``users/me`` and the channel membership of both tokens."""

    def __init__(self, probe: MattermostProbe) -> None:
        self.probe = probe
        self._ids: dict[str, str] = {}

    def endpoints(self) -> list[tuple[str, str]]:
        return [("api", self.probe.settings.url)]

    def _token(self, role: str) -> Any:
        s = self.probe.settings
        return s.token if role == "sender" else self.probe._observer().token

    def _refusal(self, role: str, status: int, text: str) -> ProbeError:

        if role == "observer" and status in (401, 403, 404):
            return self.probe._refused(status, text)
        return as_fault("Mattermost", mattermost_verdict(status, text) or foreign(status), False)

    async def _me(self, role: str) -> str:
        status, text, _, _at = await self.probe._api("GET", "/users/me", self._token(role))
        user = json_object(text).get("id") if status == 200 else None
        if not isinstance(user, str) or not user:
            raise self._refusal(role, status, text)
        self._ids[role] = user
        return user

    async def _member(self, role: str) -> str:
        channel = self.probe.settings.channel_id
        path = f"/channels/{channel}/members/{self._ids[role]}"
        status, text, _, _at = await self.probe._api("GET", path, self._token(role))
        if status == 200:
            return channel
        if status in (403, 404):
            who = "送信用アカウント" if role == "sender" else "観測用アカウント"
            fault = ChannelRejected if role == "sender" else ObserverFault
            raise fault(
                f"{who}がチャンネル {channel} のメンバーではありません（追加してください） / the "
                f"{role} is not a member of channel {channel}: add it",
                code="not_in_channel",
            )
        raise credential_refused(status, self._refusal(role, status, text))

    async def sender(self) -> str | None:
        return await self._me("sender")

    async def sender_read(self) -> str:
        return await self._member("sender")

    async def observer(self) -> str | None:
        return await self._me("observer")

    async def observer_read(self) -> str:
        return await self._member("observer")


# --------------------------------------------------------------------------- teams


class TeamsCheck(ChatCheck):
    """Teams: the Graph tokens, and one empty read of the channel's message delta."""

    reads_as_sender = False

    def __init__(self, probe: TeamsProbe) -> None:
        self.probe = probe

    def checks_sender(self) -> bool:
        # A Workflows URL's signature is checked only by posting: its endpoint is all we see.
        return self.probe.settings.graph_sender is not None

    def sender_detail(self) -> str:
        return "Graph（委任トークン） / Graph (delegated token)"

    def observer_detail(self) -> str:
        return "Graph（アプリ） / Graph (app)"

    def endpoints(self) -> list[tuple[str, str]]:
        s = self.probe.settings
        out: list[tuple[str, str]] = []
        if s.workflow_url is not None:
            out.append(("workflow", s.workflow_url.reveal()))  # only scheme, host, port are kept
        if s.graph_sender is not None or s.observer is not None:
            out += [("login", s.login_url), ("graph", s.graph_url)]
        return out

    async def sender(self) -> str | None:
        await self.probe._sender_token()
        return None

    async def observer(self) -> str | None:
        await self.probe._observer_token()
        return None

    async def observer_read(self) -> str:

        p = self.probe
        token = await p._observer_token()
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        url = f"{p._channel_path()}/messages/delta"
        params = {"$filter": f"lastModifiedDateTime gt {now}"}
        status, text, headers, _at = await p.fetch("GET", url, token=token, params=params)
        verdict = graph_verdict(status, text, headers)
        if verdict is not None:
            if isinstance(verdict, Throttle):
                verdict = throttled("Microsoft Graph", verdict)
            raise credential_refused(status, as_fault("Microsoft Graph", verdict, True))
        return p.settings.channel_id or ""


# --------------------------------------------------------------------------- lineworks


class LineWorksCheck(ChatCheck):
    """LINE WORKS: the service-account tokens, the bot, one monitoring request."""

    def __init__(self, probe: LineWorksProbe) -> None:
        self.probe = probe
        self._sender_token = ""

    def sender_detail(self) -> str:
        return self.probe.settings.app.service_account

    def observer_detail(self) -> str:
        return "monitoring.read"

    def endpoints(self) -> list[tuple[str, str]]:
        s = self.probe.settings
        return [("auth", s.auth_url), ("api", s.api_url)]

    async def sender(self) -> str | None:
        s = self.probe.settings
        self._sender_token = await self.probe._token("sender", s.app, "bot")
        return None

    async def sender_read(self) -> str:

        p = self.probe
        url = f"{p.settings.api_url}/bots/{quote(str(p.settings.bot_id))}"
        status, text, headers, _at = await p.fetch("GET", url, token=self._sender_token)
        verdict = lineworks_verdict(status, text, headers)
        if verdict is not None:
            raise credential_refused(status, as_fault("LINE WORKS", verdict, False))
        return str(json_object(text).get("botName") or p.settings.bot_id)

    async def observer(self) -> str | None:
        s = self.probe.settings
        assert s.observer is not None
        await self.probe._token("observer", s.observer.app or s.app, "monitoring.read")
        return None

    async def observer_read(self) -> str:

        p = self.probe
        s = p.settings
        assert s.observer is not None
        token = await p._token("observer", s.observer.app or s.app, "monitoring.read")
        now = time.time()
        window = monitoring_window(now, now - 60.0)  # the last second: nothing to download
        params = {**window, "botMessageFilterType": "only"}
        url = f"{s.api_url}/monitoring/message-contents/download"
        status, text, headers, _at = await p.fetch(
            "GET", url, token=token, params=params, allow_redirects=False
        )
        if status in (301, 302, 303, 307):
            return "monitoring.read"  # the file behind the redirect is not fetched
        verdict = lineworks_verdict(status, text, headers)
        if verdict is not None:
            raise credential_refused(status, as_fault("LINE WORKS", verdict, True))
        return "monitoring.read"
