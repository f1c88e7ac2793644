"""A refused credential is an ``auth`` failure in whichever phase it is met (issue 14).

A chat kind's *read* answered HTTP 401 says the token is not valid — class ``auth``
(``tsunagari_check_auth_ok 0``), not ``read``; a 403 (logged in, not allowed) stays
``read``. Checked against a local Mattermost-shaped server over real sockets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from probes.base import ObserverFault, ProbeEnv
from probes.chat.mattermost import MattermostProbe, MattermostSettings
from probes.chat.preflight import credential_refused
from probes.sim.base import free_port


@pytest.mark.parametrize(
    ("status", "error", "phase"),
    [
        (401, "", "auth"),
        (200, "invalid_auth", "auth"),
        (200, "token_revoked", "auth"),
        (403, "", None),
        (404, "", None),
        (200, "channel_not_found", None),
    ],
)
def test_credential_refused_classes(status: int, error: str, phase: str | None) -> None:
    fault = ObserverFault("観測側: 拒否 / observer: refused", code="x")
    out = credential_refused(status, fault, error)
    assert getattr(out, "phase", None) == phase
    assert out.reason == fault.reason and out.code == "x"  # the kind's words are kept


async def _server(members_status: int) -> AsyncIterator[str]:
    async def me(request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "")
        return web.json_response({"id": "obs" if token.endswith("OBS") else "bot"})

    async def member(_: web.Request) -> web.Response:
        return web.json_response(
            {"id": "api.context.session_expired.app_error"}, status=members_status
        )

    app = web.Application()
    app.router.add_get("/api/v4/users/me", me)
    app.router.add_get("/api/v4/channels/{channel}/members/{user}", member)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(("status", "phase"), [(401, "auth"), (403, "read")])
async def test_a_read_answered_401_fails_as_auth(
    status: int, phase: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MM_BOT", "BOT")
    monkeypatch.setenv("MM_OBS", "OBS")
    env = ProbeEnv()
    try:
        async for url in _server(status):
            settings = MattermostSettings.model_validate(
                {
                    "url": url,
                    "token": "env:MM_BOT",
                    "channel_id": "a" * 26,
                    "observer": {"token": "env:MM_OBS", "mode": "poll"},
                }
            )
            report = await MattermostProbe("131211/mm", settings, env).preflight()
    finally:
        await env.aclose()
    failed = report.failure
    assert failed is not None
    assert (failed.name, failed.phase) == ("sender.read", phase)
    assert report.phase("sender.auth") is not None and report.phase("sender.auth").ok  # type: ignore[union-attr]
