"""One chat contract, every chat kind (real Synapse included).

Each kind sends as the drill sender and confirms arrival as a second identity
reading the room, matched by token. Per kind: delivered, and the sighting agrees
with the far end's ground truth (the simulator's ledger, Synapse's
``origin_server_ts``) within its own error bound + 20 ms; an outage mid-drill is lost (the
send cannot reach the service, or the message is never seen); bad credentials
are rejected; a rate limit is honoured (the retry succeeds and
``Accepted.throttled`` counts the waits); no secret is ever printed or logged.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from probes.base import (
    Accepted,
    ChannelRejected,
    ChannelUnreachable,
    Clock,
    DrillMessage,
    ObserverFault,
)
from tests.chat.farends import FarEnd, deliver, secret_values

# The setting that holds each kind's observer (None makes the probe accepted-only).
OBSERVER_SETTING = {
    "webhook": "observer",
    "matrix": "observer",
    "matrix-synapse": "observer",
    "slack": "observer_token",
    "teams": "observer",
    "mattermost": "observer",
    "lineworks": "observer",
}


def injected_delay(far_end: FarEnd) -> float:
    # Real Synapse adds its own ~20 ms on top of the proxy's delay; give it room to show.
    return 0.5 if far_end.kind == "matrix-synapse" else 0.3


async def test_delivered_with_injected_latency(far_end: FarEnd) -> None:
    """Judged against the far end's ground truth, not against the injected delay.

    The simulators' ledger (or Synapse's ``origin_server_ts`` plus the proxy's
    delay) says when a reader could first see each message: the sighting is never
    earlier, and later by no more than its own error bound + 20 ms (the oracle's rule).
    """
    delay = injected_delay(far_end)
    probe = await far_end.channel(latency=delay)
    assert probe.confirms()
    await probe.open()
    try:
        for _ in range(3):
            message = DrillMessage.new("参集訓練")
            waiting = asyncio.ensure_future(probe.observe(message))
            sent = Clock.monotonic()
            accepted = await probe.send(message)
            sighting = await asyncio.wait_for(waiting, 10)
            truth = await far_end.visible_at(probe, message.token, sighting)
            assert truth is not None, far_end.kind
            early = far_end.truth_resolution
            facts = (far_end.kind, sent, truth, sighting)
            assert truth >= sent + delay - early, facts  # the far end held it as injected
            assert sighting.at >= truth, facts  # never seen before a reader could
            assert sighting.at - truth <= sighting.error_bound_s + 0.02, facts
            assert accepted.at <= sighting.at
            assert accepted.throttled == 0
            assert sighting.error_bound_s >= 0
    finally:
        await probe.close()


async def test_outage_mid_drill_is_lost(far_end: FarEnd) -> None:
    probe = await far_end.channel(disposable=True)
    await probe.open()
    try:
        await deliver(probe)  # the channel works before the outage
        await far_end.take_down(probe)
        message = DrillMessage.new("停電訓練")
        waiting = asyncio.ensure_future(probe.observe(message))
        try:
            await probe.send(message)
        except ChannelUnreachable as exc:
            assert exc.reason  # lost: the service could not be reached
        else:
            done, _ = await asyncio.wait([waiting], timeout=1.5)
            assert not done, "a message sent into an outage was reported as seen"
        assert not waiting.done(), "the observer must not fail (or see) during an outage"
        waiting.cancel()
    finally:
        await probe.close()


async def test_bad_credentials_are_rejected(far_end: FarEnd) -> None:
    probe = await far_end.channel(reject="auth")
    await probe.open()
    try:
        with pytest.raises(ChannelRejected) as info:
            await probe.send(DrillMessage.new("認証訓練"))
        assert not info.value.temporary
        assert info.value.code
        assert " / " in info.value.reason  # Japanese first, English after
    finally:
        await probe.close()


async def test_rate_limit_is_honoured(far_end: FarEnd) -> None:
    probe = await far_end.channel(rate_limit=2)
    await probe.open()
    try:
        messages = [DrillMessage.new(f"一斉送信 {i}") for i in range(4)]
        waiting = [asyncio.ensure_future(probe.observe(m)) for m in messages]
        started = Clock.monotonic()
        accepted = await asyncio.gather(*(probe.send(m) for m in messages))
        elapsed = Clock.monotonic() - started
        sightings = await asyncio.wait_for(asyncio.gather(*waiting), 10)
        assert sum(a.throttled for a in accepted) >= 1, "the provider said slow down"
        assert elapsed >= 0.3, "the retries waited as told"
        assert all(s.at >= started for s in sightings)
    finally:
        await probe.close()


async def test_refused_observer_is_a_harness_fault(far_end: FarEnd) -> None:
    probe = await far_end.channel(observer_reject=True)
    await probe.open()
    try:
        message = DrillMessage.new("観測不能")
        waiting = asyncio.ensure_future(probe.observe(message))
        assert isinstance(await probe.send(message), Accepted)  # sending is unaffected
        with pytest.raises(ObserverFault) as info:
            await asyncio.wait_for(waiting, 5)
        assert " / " in info.value.reason
    finally:
        await probe.close()


async def test_without_observer_is_accepted_only(far_end: FarEnd) -> None:
    probe = await far_end.channel(**{OBSERVER_SETTING[far_end.kind]: None})
    assert not probe.confirms()
    await probe.open()
    try:
        accepted = await probe.send(DrillMessage.new("受付のみ"))
        assert isinstance(accepted, Accepted)
    finally:
        await probe.close()


async def test_secrets_are_never_printed(
    far_end: FarEnd, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    good = await far_end.channel()
    bad = await far_end.channel(reject="auth")
    seen: list[str] = [repr(good.settings), good.settings.model_dump_json(), str(good.settings)]
    for probe in (good, bad):
        await probe.open()
    try:
        accepted, sighting, _ = await deliver(good)
        seen += [repr(accepted), repr(sighting)]
        with pytest.raises(ChannelRejected) as info:
            await bad.send(DrillMessage.new("漏洩確認"))
        exc: BaseException | None = info.value
        while exc is not None:
            seen += [str(exc), repr(exc), repr(exc.args)]
            exc = exc.__cause__ or exc.__context__
    finally:
        for probe in (good, bad):
            await probe.close()
    out = capsys.readouterr()
    seen += [caplog.text, out.out, out.err]
    secrets = secret_values(good.settings) + secret_values(bad.settings)
    assert secrets
    for secret in secrets:
        assert len(secret) >= 8
        for text in seen:
            assert secret not in text
