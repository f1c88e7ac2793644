"""Messages that say what to fix (issue 19, item 4), each against a real server.

- an observer token of another user than ``observer.user`` names both users (real Synapse);
- an observer outside the room names the room and the user (real Synapse, through a drill);
- the sender's own token given as the observer's is refused at open (real Synapse);
- a server that is not answering: the record says whether the send and/or the observer
  could not reach it and how long it waited (a listening socket that never answers, and
  the real Synapse for the side that works).

Every reason is bilingual: Japanese, " / ", English; both halves are checked.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from drills.core.delivery import Delivery, Outcome
from drills.core.journal import Journal
from drills.core.registry import parse_registry
from drills.core.runner import Drill
from probes.base import ChannelRejected, DrillMessage, ObserverFault, ObserverIsSender, ProbeEnv
from probes.chat.matrix import MatrixProbe, MatrixSettings
from probes.settings import SecretRef
from tests.chat.farends import SynapseSetup

pytestmark = pytest.mark.servers

REQUEST_TIMEOUT_S = 0.5


def halves(reason: str) -> tuple[str, str]:
    ja, sep, en = reason.partition(" / ")
    japanese = r"[ぁ-んァ-ン一-龯]"
    assert sep and re.search(japanese, ja) and not re.search(japanese, en), reason
    return ja, en


@pytest.fixture
def silent() -> Iterator[str]:
    """A server that is not answering: it listens (the kernel completes the connection) but
    never accepts, so every request is written and then waits for an answer for ever."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def probe_with(env: ProbeEnv, setup: SynapseSetup, **overrides: Any) -> MatrixProbe:
    settings = MatrixSettings.model_validate(setup.settings(setup.bot, **overrides))
    return MatrixProbe("131016/chat", settings, env)


async def test_an_observer_token_of_another_user_names_both_users(
    env: ProbeEnv, synapse: SynapseSetup
) -> None:
    """Before: "M_FORBIDDEN (observer cannot sync)". Now: whose token it is, and whose it should be."""
    other = synapse.throttled  # a third account: neither the sender nor observer.user
    observer = {"user": synapse.watch.user_id, "token": SecretRef.inline(other.token)}
    probe = probe_with(env, synapse, observer=observer)
    try:
        with pytest.raises(ObserverFault) as info:
            await probe.open()
    finally:
        await probe.close()
    assert info.value.code == "observer_token_user"
    for half in halves(info.value.reason):
        assert synapse.watch.user_id in half and other.user_id in half
    assert "observer.token" in info.value.reason and "observer.user" in info.value.reason


async def test_a_sender_token_of_another_user_is_refused_naming_both_users(
    env: ProbeEnv, synapse: SynapseSetup
) -> None:
    """It would post as someone else: every send is refused, and nothing is posted."""
    other = synapse.throttled
    raw = synapse.settings(synapse.bot)
    raw["sender"] = {"user": synapse.bot.user_id, "token": SecretRef.inline(other.token)}
    probe = MatrixProbe("131016/chat", MatrixSettings.model_validate(raw), env)
    await probe.open()
    try:
        with pytest.raises(ChannelRejected) as info:
            await probe.send(DrillMessage.new("送信者確認"))
    finally:
        await probe.close()
    assert info.value.code == "sender_token_user"
    for half in halves(info.value.reason):
        assert synapse.bot.user_id in half and other.user_id in half


async def test_the_senders_token_as_observer_is_refused_at_open(
    env: ProbeEnv, synapse: SynapseSetup
) -> None:
    """The file names another observer user, so only the homeserver can tell: at open."""
    observer = {"user": synapse.watch.user_id, "token": SecretRef.inline(synapse.bot.token)}
    probe = probe_with(env, synapse, observer=observer)
    try:
        with pytest.raises(ObserverIsSender) as info:
            await probe.open()
    finally:
        await probe.close()
    for half in halves(info.value.reason):
        assert synapse.bot.user_id in half and synapse.watch.user_id in half
    assert "the sender's own token" in info.value.reason


def registry(homeserver: str, setup: SynapseSetup, room: str, **extra: str) -> Any:
    observer_hs = f", homeserver: {extra['observer_hs']}" if "observer_hs" in extra else ""
    return parse_registry(
        f"""
municipalities:
  - code: "131016"
    name: 千代田区
    channels:
      - id: chat
        kind: matrix
        homeserver: {homeserver}
        room: "{room}"
        request_timeout: {REQUEST_TIMEOUT_S}s
        sender: {{user: "{setup.bot.user_id}", token: env:FIXIT_BOT}}
        observer: {{user: "{setup.watch.user_id}", token: env:FIXIT_WATCH{observer_hs}}}
""",
        "fixit.yaml",
    )


async def drill_once(reg: Any, timeout: float) -> tuple[Delivery, float]:
    async with Drill(reg, Journal(":memory:"), live=True) as drill:
        started = time.monotonic()
        step = await drill.broadcast("応答確認", timeout=timeout)
        took = time.monotonic() - started
    (delivery,) = step.deliveries
    return delivery, took


@pytest.fixture
def tokens(synapse: SynapseSetup, monkeypatch: pytest.MonkeyPatch) -> SynapseSetup:
    monkeypatch.setenv("FIXIT_BOT", synapse.bot.token)
    monkeypatch.setenv("FIXIT_WATCH", synapse.watch.token)
    return synapse


async def test_an_observer_outside_the_room_names_the_room_and_the_user(
    tokens: SynapseSetup,
) -> None:
    room = tokens.hs.create_room(tokens.bot)  # the observer is neither invited nor joined
    delivery, _ = await drill_once(registry(tokens.hs.base_url, tokens, room), timeout=5.0)
    assert delivery.outcome is Outcome.ERROR  # the drill could not look: not the channel's fault
    for half in halves(delivery.reason):
        assert room in half and tokens.watch.user_id in half


def seconds(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    assert found, (pattern, text)
    return float(found.group(1))


async def test_a_homeserver_not_answering_at_all(tokens: SynapseSetup, silent: str) -> None:
    """Send and observer both go to the silent server: both are named, with the waits."""
    delivery, took = await drill_once(registry(silent, tokens, tokens.room), timeout=10.0)
    assert delivery.outcome is Outcome.LOST
    ja, en = halves(delivery.reason)
    assert "応答しません" in ja and "観測側も接続できません" in ja
    assert "did not answer within 0.5 s" in en and "the observer could not reach it either" in en
    waited = seconds(r"after (\d+\.\d) s\)", en)
    opened = seconds(r"opening the channel had taken (\d+\.\d) s", en)
    # Ground truth: no answer can time out before request_timeout; both waits lie in the step.
    assert REQUEST_TIMEOUT_S - 0.05 <= waited and REQUEST_TIMEOUT_S - 0.05 <= opened
    assert waited + opened <= took + 0.1, (waited, opened, took)
    # Opening does not spend a request_timeout on each check of an observer it cannot reach.
    assert opened < 2 * REQUEST_TIMEOUT_S, opened


async def test_only_the_sending_path_not_answering(tokens: SynapseSetup, silent: str) -> None:
    """The observer reads through the real Synapse (observer.homeserver) and says nothing is wrong."""
    reg = registry(silent, tokens, tokens.room, observer_hs=tokens.hs.base_url)
    delivery, took = await drill_once(reg, timeout=10.0)
    assert delivery.outcome is Outcome.LOST
    ja, en = halves(delivery.reason)
    assert "観測側からは異常の報告はありません" in ja
    assert "did not answer within 0.5 s" in en and "the observer reported no trouble" in en
    waited = seconds(r"after (\d+\.\d) s\)", en)
    assert REQUEST_TIMEOUT_S - 0.05 <= waited <= took


async def test_only_the_observer_not_answering(tokens: SynapseSetup, silent: str) -> None:
    """The send is accepted by the real Synapse; the observer's URL is silent: an error, with the wait."""
    reg = registry(tokens.hs.base_url, tokens, tokens.room, observer_hs=silent)
    delivery, took = await drill_once(reg, timeout=1.5)
    assert delivery.outcome is Outcome.ERROR and delivery.accepted_at is not None
    ja, en = halves(delivery.reason)
    assert "1.5 秒待機" in ja and "応答しません" in ja
    assert "the drill could not look (waited 1.5 s)" in en and "did not answer" in en
    assert took >= 1.5
