"""Drill marker and token enforcement, outcome classification, latency arithmetic."""

from __future__ import annotations

import pytest

from drills.core.delivery import Outcome, classify
from drills.core.reasons import fault_outcome as _fault_outcome
from drills.core.scoring import percentile
from probes.base import (
    ChannelRejected,
    ChannelUnreachable,
    Clock,
    DrillMessage,
    ObserverFault,
    find_tokens,
    new_token,
)
from probes.settings import SecretRef, parse_duration


def test_message_cannot_exist_without_marker_or_token():
    with pytest.raises(ValueError, match="marker"):
        DrillMessage(token=new_token(), text="x", marker="")
    with pytest.raises(ValueError, match="marker"):
        DrillMessage(token=new_token(), text="x", marker="   ")
    with pytest.raises(ValueError, match="token"):
        DrillMessage(token="", text="x")
    with pytest.raises(ValueError, match="token"):
        DrillMessage(token="TSG-short", text="x")


def test_rendered_message_carries_marker_and_token():
    m = DrillMessage.new("全職員は参集してください", subject="参集")
    body, subject = m.render(), m.render_subject()
    assert body.startswith("【訓練】") and subject.startswith("【訓練】")
    assert find_tokens(body) == [m.token] and find_tokens(subject) == [m.token]
    custom = DrillMessage.new("x", marker="[DRILL]")
    assert custom.render().startswith("[DRILL]")


def test_tokens_are_unique_and_found_in_noise():
    tokens = {new_token() for _ in range(5000)}
    assert len(tokens) == 5000
    a, b = sorted(tokens)[:2]
    assert find_tokens(f"re: {a}\n> quoted {b}!") == [a, b]
    assert find_tokens("TSG-ILOU00000000") == []  # ambiguous letters are not in the alphabet


@pytest.mark.parametrize(
    ("latency", "slo", "timed_out", "outcome"),
    [
        (0.5, 60.0, False, Outcome.DELIVERED),
        (60.0, 60.0, False, Outcome.DELIVERED),
        (60.01, 60.0, False, Outcome.LATE),
        (None, 60.0, True, Outcome.LOST),
        (1.0, 60.0, True, Outcome.LOST),
    ],
)
def test_classify(latency, slo, timed_out, outcome):
    assert classify(latency, slo, timed_out) is outcome


def test_fault_mapping_keeps_channel_and_harness_apart():
    assert _fault_outcome(ChannelRejected("535 auth failed")) == (
        Outcome.REJECTED,
        "535 auth failed",
    )
    assert _fault_outcome(ChannelUnreachable("refused"))[0] is Outcome.LOST
    assert _fault_outcome(ObserverFault("IMAP login failed"))[0] is Outcome.ERROR
    assert _fault_outcome(TimeoutError(), sending=True)[0] is Outcome.LOST
    outcome, reason = _fault_outcome(KeyError("bug"))
    assert outcome is Outcome.ERROR and "harness" in reason
    assert not Outcome.ERROR.counts_against_channel and not Outcome.ERROR.reached
    assert Outcome.LATE.reached and not Outcome.ACCEPTED.reached


def test_wall_to_monotonic_bridge():
    now_w, now_m = Clock.wall(), Clock.monotonic()
    converted = Clock.monotonic_from_wall(now_w - 2.0)
    assert abs((now_m - converted) - 2.0) < 0.05


def test_percentile_interpolates():
    assert percentile([], 50) is None
    assert percentile([3.0], 95) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 95) == pytest.approx(4.8)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("60s", 60.0), ("2m", 120.0), ("1.5h", 5400.0), (3, 3.0), ("7", 7.0)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["fast", "-1s", "1 week", True, -2])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_secret_ref_never_shows_value(monkeypatch):
    monkeypatch.setenv("TSG_CANARY", "canary-7d1f")
    ref = SecretRef.parse("env:TSG_CANARY")
    assert ref.reveal() == "canary-7d1f"
    assert "canary" not in repr(ref) + str(ref) + f"{ref}"
    inline = SecretRef.inline("canary-inline")
    assert "canary" not in repr(inline) + str(inline)
