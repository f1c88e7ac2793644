"""Preflight of the chat kinds against their simulators: phases, faults, and nothing posted.

Every case also asserts the check left no trace a person could see: the
simulator's ledger (ground truth of every message) is empty and the room holds
no post — a check is not a message.
"""

from __future__ import annotations

import asyncio
import doctest
import importlib
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest

from probes.base import Probe, ProbeEnv
from probes.chat.lineworks import LineWorksProbe
from probes.chat.matrix import MatrixProbe
from probes.chat.mattermost import MattermostProbe
from probes.chat.slack import SlackProbe
from probes.chat.teams import GraphSender, TeamsProbe
from probes.endpoint import NOT_TLS
from probes.preflight import PreflightReport, Preflights
from probes.settings import SecretRef
from probes.sim.base import SimKnobs
from tests.chat.farends import SimFarEnd, SynapseSetup, rebuild, secret_values

KINDS: dict[str, type[Probe]] = {
    "matrix": MatrixProbe,
    "slack": SlackProbe,
    "mattermost": MattermostProbe,
    "teams": TeamsProbe,
    "lineworks": LineWorksProbe,
}
# The first endpoint each kind checks (a simulator serves every role on one port).
FIRST_ENDPOINT = {
    "matrix": "homeserver",
    "slack": "api",
    "mattermost": "api",
    "teams": "workflow",
    "lineworks": "auth",
}
# Kinds whose observer is a person-like account with a who-am-I and a membership.
PERSON_OBSERVERS = ["matrix", "slack", "mattermost"]


@pytest.fixture(params=list(KINDS))
async def end(request: pytest.FixtureRequest, env: ProbeEnv) -> AsyncIterator[SimFarEnd]:
    far = await SimFarEnd(env, KINDS[request.param]).start()
    yield far
    await far.close()


@pytest.fixture
async def person_end(request: pytest.FixtureRequest, env: ProbeEnv) -> AsyncIterator[SimFarEnd]:
    far = await SimFarEnd(env, KINDS[request.param]).start()
    yield far
    await far.close()


def nothing_left(end: SimFarEnd, probe: Probe) -> None:
    room = end.sim.room_for(probe.channel_id)
    assert end.sim.ledger.entries() == []
    assert room.accepted == [] and room.visible == []


def failed_at(report: PreflightReport) -> tuple[str, str | None]:
    assert not report.ok
    failure = report.failure
    assert failure is not None and failure.reason is not None
    assert failure.reason.ja and failure.reason.en and failure.reason.ja != failure.reason.en
    assert report.phases[-1] is failure  # the check stops at the first failure
    return failure.name, failure.code


async def check(probe: Probe) -> PreflightReport:
    assert isinstance(probe, Preflights)
    return await probe.preflight()


async def test_healthy_channel_passes_every_phase(end: SimFarEnd) -> None:
    probe = await end.channel()
    report = await check(probe)
    assert report.ok, report.reason
    first = FIRST_ENDPOINT[end.kind]
    names = [p.name for p in report.phases]
    assert names[:3] == [f"{first}.dns", f"{first}.connect", f"{first}.tls"]
    assert [p.phase for p in report.phases[:3]] == ["dns", "connect", "tls"]
    assert names[-2:] == ["observer.auth", "observer.read"]
    # A Teams Workflows URL is checked only by posting: no sender phase, and it says so.
    assert report.facts["sender_checked"] == (0.0 if end.kind == "teams" else 1.0)
    assert ("sender.auth" in names) == (end.kind != "teams")
    # Loopback simulators serve plain HTTP: said, and no certificate invented.
    assert report.phases[2].detail == NOT_TLS and report.certificates == ()
    assert report.facts["observer_configured"] == 1.0
    assert sum(p.seconds for p in report.phases) <= report.elapsed_s
    shown = json.dumps(report.to_dict(), ensure_ascii=False)
    assert not [s for s in secret_values(probe.settings) if s in shown]  # no secret in the report
    nothing_left(end, probe)


async def test_refused_connection_fails_at_connect(end: SimFarEnd) -> None:
    key = f"131016/down-{end.kind}"
    settings = end.sim.add_channel(key, SimKnobs(outage=True), end.sim.placeholder_settings())
    report = await check(end.make(key, settings))
    assert failed_at(report) == (f"{FIRST_ENDPOINT[end.kind]}.connect", "connect")
    assert "refused" in report.failure.reason.en  # type: ignore[union-attr]
    assert end.sim.ledger.entries() == []


def _graph_sender(end: SimFarEnd, probe: Probe, refresh: str | None = None) -> Probe:
    """The channel with a delegated Graph sender instead of its Workflows URL (Teams)."""
    graph = end.sim.graph_sender(probe.channel_id)  # type: ignore[attr-defined]
    if refresh is not None:
        graph["refresh_token"] = SecretRef.inline(refresh)
    return rebuild(probe, workflow_url=None, graph_sender=GraphSender.model_validate(graph))


def _wrong_sender(end: SimFarEnd, probe: Probe) -> Probe:
    """The sender's credential refused: the reject knob, or (Teams) a revoked refresh token."""
    return _graph_sender(end, probe, "0.AAAA-revoked") if end.kind == "teams" else probe


async def test_teams_graph_sender_is_checked(env: ProbeEnv) -> None:
    far = await SimFarEnd(env, TeamsProbe).start()
    try:
        probe = _graph_sender(far, await far.channel())
        report = await check(probe)
        assert report.ok, report.reason
        assert report.facts["sender_checked"] == 1.0
        assert report.phase("sender.auth").detail.startswith("Graph")  # type: ignore[union-attr]
        nothing_left(far, probe)
    finally:
        await far.close()


async def test_bad_sender_credentials_fail_sender_auth(end: SimFarEnd) -> None:
    probe = _wrong_sender(end, await end.channel(reject="auth"))
    report = await check(probe)
    name, code = failed_at(report)
    assert name == "sender.auth" and code
    nothing_left(end, probe)


async def test_bad_observer_credentials_fail_observer_auth(end: SimFarEnd) -> None:
    probe = await end.channel(observer_reject=True)
    report = await check(probe)
    name, _ = failed_at(report)
    assert name == "observer.auth"
    assert all(p.ok for p in report.phases[:-1])  # the sender's phases passed
    nothing_left(end, probe)


async def test_no_observer_is_said_not_failed(end: SimFarEnd) -> None:
    setting = "observer_token" if end.kind == "slack" else "observer"
    probe = await end.channel(**{setting: None})
    report = await check(probe)
    assert report.ok, report.reason
    assert report.facts["observer_configured"] == 0.0
    assert not [p for p in report.phases if p.name.startswith("observer.")]
    nothing_left(end, probe)


def _sender_as_observer(kind: str, probe: Probe) -> dict[str, Any]:
    s: Any = probe.settings
    if kind == "slack":
        return {"observer_token": s.bot_token}
    if kind == "mattermost":
        return {"observer": s.observer.model_copy(update={"token": s.token})}
    same = {"user": s.sender.user, "token": s.sender.token}  # matrix: the bot watches itself
    return {"observer": s.observer.model_copy(update=same)}


@pytest.mark.parametrize("person_end", PERSON_OBSERVERS, indirect=True)
async def test_observer_that_is_the_sender_is_refused(person_end: SimFarEnd) -> None:
    probe = await person_end.channel()
    probe = rebuild(probe, **_sender_as_observer(person_end.kind, probe))
    report = await check(probe)
    assert failed_at(report) == ("observer.auth", "observer_is_sender")
    assert "sender itself" in report.failure.reason.en  # type: ignore[union-attr]
    nothing_left(person_end, probe)


async def test_matrix_sender_token_in_observer_token_is_named(env: ProbeEnv) -> None:
    far = await SimFarEnd(env, MatrixProbe).start()
    try:
        probe: Any = await far.channel()
        # observer.user says drill-watch, but the token is the bot's own.
        mixed = probe.settings.observer.model_copy(update={"token": probe.settings.sender.token})
        report = await check(rebuild(probe, observer=mixed))
        assert failed_at(report) == ("observer.auth", "observer_is_sender")
        assert "observer.token belongs to @drill-bot" in report.failure.reason.en  # type: ignore[union-attr]
    finally:
        await far.close()


@pytest.mark.parametrize("person_end", PERSON_OBSERVERS, indirect=True)
@pytest.mark.parametrize("role", ["post", "read"])
async def test_identity_not_in_the_room_fails_its_read(person_end: SimFarEnd, role: str) -> None:
    probe = await person_end.channel()
    person_end.sim.leave(probe.channel_id, role)
    report = await check(probe)
    name, code = failed_at(report)
    assert name == ("sender.read" if role == "post" else "observer.read")
    assert code is not None and "in" in code  # not_in_channel, observer_not_in_room …
    nothing_left(person_end, probe)


@pytest.mark.parametrize("name", ["probes.endpoint", "probes.chat.preflight"])
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0


@pytest.mark.servers
async def test_matrix_against_a_real_synapse(env: ProbeEnv, synapse: SynapseSetup) -> None:
    """The same phases against Synapse: healthy, a non-member observer, the bot as observer,
    a wrong sender token, an encrypted room — and the room's timeline is untouched."""
    hs = synapse.hs

    def probe(**overrides: Any) -> Probe:
        settings = {**synapse.settings(synapse.bot), **overrides}
        return MatrixProbe("131016/matrix", MatrixProbe.Settings.model_validate(settings), env)

    def as_observer(user: Any) -> dict[str, Any]:
        return {"user": user.user_id, "token": SecretRef.inline(user.token)}

    def timeline() -> list[str]:
        path = f"/_matrix/client/v3/rooms/{quote(synapse.room, safe='')}/messages?dir=b&limit=50"
        return [e["event_id"] for e in hs._call("GET", path, synapse.bot)["chunk"]]

    before = await asyncio.to_thread(timeline)
    healthy = await check(probe())
    assert healthy.ok, healthy.reason
    assert healthy.phase("observer.read").detail == synapse.room  # type: ignore[union-attr]
    assert healthy.phase("sender.auth").detail == synapse.bot.user_id  # type: ignore[union-attr]

    outsider = await asyncio.to_thread(hs.register, f"outsider-{secrets.token_hex(3)}")
    report = await check(probe(observer=as_observer(outsider)))
    assert failed_at(report) == ("observer.read", "observer_not_in_room")

    report = await check(probe(observer=as_observer(synapse.bot)))
    assert failed_at(report) == ("observer.auth", "observer_is_sender")

    wrong = {"user": synapse.bot.user_id, "token": SecretRef.inline("syt_d3Jvbmc_wrong_0abcde")}
    report = await check(probe(sender=wrong))
    assert failed_at(report) == ("sender.auth", "M_UNKNOWN_TOKEN HTTP 401")

    secret_room = await asyncio.to_thread(
        hs.create_room, synapse.bot, invite=[synapse.watch], encrypted=True
    )
    report = await check(probe(room=secret_room))
    assert failed_at(report) == ("sender.read", "encrypted_room")
    assert await asyncio.to_thread(timeline) == before  # nothing was posted


async def test_tls_module_checks_the_endpoints_and_logs_in_nowhere(end: SimFarEnd) -> None:
    """``module=tls``: the kind's endpoints up to their TLS, nothing else — not even with a
    sender credential the service refuses."""
    from drills.core.preflight_tls import tls_check

    probe = _wrong_sender(end, await end.channel(reject="auth"))
    report = await tls_check(probe)
    assert report.ok, report.reason
    first = "login" if end.kind == "teams" else FIRST_ENDPOINT[end.kind]  # no Workflows URL
    assert [p.name for p in report.phases][:3] == [
        f"{first}.dns",
        f"{first}.connect",
        f"{first}.tls",
    ]
    assert {p.phase for p in report.phases} == {"dns", "connect", "tls"}
    assert not (await check(probe)).ok  # the full check does log in, and is refused
    nothing_left(end, probe)
