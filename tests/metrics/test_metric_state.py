"""The collector's arithmetic, on hand-written journals (no servers)."""

from __future__ import annotations

import os
import time

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from drills.core.delivery import Delivery, Evidence, Outcome
from drills.core.events import (
    FallbackAttempt,
    FallbackEvent,
    FallbackMunicipality,
    RollCallEvent,
    RollCallParticipant,
)
from drills.core.journal import Journal
from drills.core.standing import QUANTILES
from drills.core.taxonomy import Cause, Stage
from drills.metrics.catalogue import CATALOGUE
from drills.metrics.collector import JournalCollector, Scope, exposition
from drills.metrics.digest import LATENCY_BUCKETS, ChannelDigest, digest_channel, tls_not_after
from drills.metrics.state import JournalView, streak
from drills.reporting.scorecard import build_scorecard
from probes.base import new_token
from tests.metrics.support import sample_set

S, V = "シナリオ A", "hq"


def deliver(
    journal: Journal,
    run_id: str,
    outcome: Outcome,
    latency: float | None = None,
    code: str = "131211",
    name: str = "足立区",
    channel: str = "chat",
    kind: str = "webhook",
    evidence: Evidence | None = None,
    **extra: object,
) -> Delivery:
    now = time.time()
    d = Delivery(
        run_id=run_id,
        step="s",
        municipality_code=code,
        municipality_name=name,
        channel_id=channel,
        kind=kind,
        token=new_token(),
        outcome=outcome,
        recipient="+819011110001",
        sent_at=now,
        delivered_at=now + latency if latency is not None else None,
        latency_s=latency,
        error_bound_s=0.01 if latency is not None else None,
        slo_latency_s=2.0,
        vantage=V,
        scenario=S,
        extra=dict(extra),
        evidence=evidence,
    )
    journal.record(d)
    return d


def samples(journal: Journal, **scope: object) -> dict:
    return sample_set(exposition(journal, scope=Scope(**scope)).decode())  # type: ignore[arg-type]


def value(found: dict, name: str, **labels: str) -> float | None:
    for (n, lab), v in found.items():
        if n == name and all(dict(lab).get(k) == x for k, x in labels.items()):
            return v
    return None


@pytest.fixture
def journal() -> Journal:
    j = Journal(":memory:")
    yield j
    j.close()


def test_histogram_buckets_are_cumulative_and_le_inclusive() -> None:
    run = "r"
    ds = [
        Delivery(
            run,
            "s",
            "131211",
            "足立区",
            "chat",
            "webhook",
            new_token(),
            Outcome.DELIVERED,
            latency_s=x,
        )
        for x in (0.1, 0.1000001, 3.0, 700.0)
    ] + [Delivery(run, "s", "131211", "足立区", "chat", "webhook", new_token(), Outcome.LOST)]
    ch = digest_channel(ds)
    assert ch.latency_count == 4 and ch.buckets[0] == 1 and ch.buckets[1] == 1
    assert sum(ch.buckets) == 3  # 700 s is above 10 min: only in +Inf
    assert LATENCY_BUCKETS[0] == 0.1 and LATENCY_BUCKETS[-1] == 600.0


def test_counters_add_up_every_run_and_gauges_show_the_latest(journal: Journal) -> None:
    r1 = journal.begin_run(S, V)
    for _ in range(3):
        deliver(journal, r1, Outcome.DELIVERED, 0.2)
    journal.finish_run(r1)
    r2 = journal.begin_run(S, V)
    deliver(journal, r2, Outcome.DELIVERED, 0.3)
    deliver(journal, r2, Outcome.LOST)
    journal.finish_run(r2)
    found = samples(journal)
    assert value(found, "tsunagari_deliveries_total", outcome="delivered") == 4
    assert value(found, "tsunagari_deliveries_total", outcome="lost") == 1
    assert value(found, "tsunagari_delivery_latency_seconds_count") == 4
    assert value(found, "tsunagari_delivery_latency_seconds_bucket", le="0.25") == 3
    assert value(found, "tsunagari_delivery_latency_seconds_sum") == pytest.approx(0.9)
    assert value(found, "tsunagari_last_drill_deliveries", outcome="delivered") == 1
    assert value(found, "tsunagari_last_drill_deliveries", outcome="lost") == 1
    assert value(found, "tsunagari_channel_reachability_ratio") == 0.5
    assert value(found, "tsunagari_channel_latency_p50_seconds") == pytest.approx(0.3)


def test_a_running_drill_counts_but_does_not_replace_the_latest_gauges(journal: Journal) -> None:
    r1 = journal.begin_run(S, V)
    deliver(journal, r1, Outcome.DELIVERED, 0.2)
    journal.finish_run(r1)
    r2 = journal.begin_run(S, V)  # this process is alive: the run is running
    deliver(journal, r2, Outcome.LOST)
    found = samples(journal)
    assert value(found, "tsunagari_drill_running") == 1
    assert value(found, "tsunagari_deliveries_total", outcome="lost") == 1
    assert value(found, "tsunagari_channel_reachable") == 1  # still the finished drill's
    assert (
        value(found, "tsunagari_drill_last_start_timestamp_seconds")
        == journal.run(r2)["started_at"]
    )
    assert (
        value(found, "tsunagari_drill_last_finish_timestamp_seconds")
        == journal.run(r1)["finished_at"]
    )


def test_a_dead_running_drill_is_ended_but_not_a_success(journal: Journal) -> None:
    r1 = journal.begin_run(S, V)
    deliver(journal, r1, Outcome.DELIVERED, 0.2)
    journal.db.execute(
        "UPDATE runs SET pid = ? WHERE run_id = ?", (2**22 + 12345, r1)
    )  # no such process
    found = samples(journal)
    assert value(found, "tsunagari_drill_running") == 0
    assert value(found, "tsunagari_drill_last_finish_timestamp_seconds") is not None
    assert value(found, "tsunagari_drill_last_success_timestamp_seconds") is None
    assert value(found, "tsunagari_channel_reachable") == 1


def test_readiness_is_the_scorecards_and_its_change(journal: Journal) -> None:
    r1 = journal.begin_run(S, V)
    deliver(journal, r1, Outcome.DELIVERED, 0.2)
    deliver(journal, r1, Outcome.DELIVERED, 0.2, channel="mail", kind="mail")
    journal.finish_run(r1)
    r2 = journal.begin_run(S, V)
    deliver(journal, r2, Outcome.DELIVERED, 0.2)
    deliver(journal, r2, Outcome.REJECTED, channel="mail", kind="mail")
    journal.finish_run(r2)
    found = samples(journal)
    card = build_scorecard(journal, r2)
    # README "Scoring model": r1 = 100 (two kinds confirmed); r2: channels (100 + 0)/2 = 0.5,
    # redundancy 1 kind of 2, freshness 1 → (0.25 + 0.1 + 0.1) / 0.8 = 56.25 → 56.3
    assert value(found, "tsunagari_readiness_score") == card["municipalities"][0]["score"] == 56.3
    assert value(found, "tsunagari_readiness_score_change") == pytest.approx(-43.7)


def test_streak_skips_drills_that_could_not_tell() -> None:
    def ch(**outcomes: int) -> ChannelDigest:
        return ChannelDigest("1", "n", "c", "k", outcomes, ())

    assert streak([]) == 0
    assert streak([ch(lost=1), ch(lost=1)]) == 2
    assert streak([ch(lost=1), ch(error=2), ch(rejected=1)]) == 2
    assert streak([ch(lost=1), ch(delivered=1)]) == 0
    assert ch(accepted=3).reachable is None and ch(error=1).reachable is None
    assert ch(accepted=1, lost=1).reachable is False


def test_harness_errors_never_make_a_channel_unreachable(journal: Journal) -> None:
    r1 = journal.begin_run(S, V)
    deliver(journal, r1, Outcome.DELIVERED, 0.2)
    journal.finish_run(r1)
    r2 = journal.begin_run(S, V)
    deliver(journal, r2, Outcome.ERROR)
    journal.finish_run(r2)
    found = samples(journal)
    assert value(found, "tsunagari_channel_reachable") == 1
    assert value(found, "tsunagari_channel_unreachable_streak") == 0
    assert value(found, "tsunagari_last_drill_deliveries", outcome="error") == 1


def test_drill_outage_is_never_unreachable_nor_in_the_streak_or_reachability(
    journal: Journal,
) -> None:
    r1 = journal.begin_run(S, V)
    deliver(journal, r1, Outcome.LOST)
    journal.finish_run(r1)
    r2 = journal.begin_run(S, V)  # only sent into the drill's own outage: tells nothing
    for _ in range(3):
        deliver(journal, r2, Outcome.DRILL_OUTAGE)
    journal.finish_run(r2)
    found = samples(journal)
    assert value(found, "tsunagari_channel_reachable") == 0  # still r1's
    assert value(found, "tsunagari_channel_unreachable_streak") == 1  # r2 skipped, not 2
    assert value(found, "tsunagari_last_drill_deliveries", outcome="drill_outage") == 3
    assert value(found, "tsunagari_deliveries_total", outcome="drill_outage", evidence="none") == 3
    r3 = journal.begin_run(S, V)
    deliver(journal, r3, Outcome.DELIVERED, 0.2)
    for _ in range(3):
        deliver(journal, r3, Outcome.DRILL_OUTAGE)
    journal.finish_run(r3)
    found = samples(journal)
    # 1 delivered / 1 counted, not 1 / 4; reached, so the streak ends
    assert value(found, "tsunagari_channel_reachability_ratio") == 1.0
    assert value(found, "tsunagari_channel_reachable") == 1
    assert value(found, "tsunagari_channel_unreachable_streak") == 0
    assert value(found, "tsunagari_deliveries_total", outcome="drill_outage") == 6


def test_evidence_is_a_label_of_the_delivery_counters(journal: Journal) -> None:
    r1 = journal.begin_run(S, V)
    for outcome, evidence, n in (
        (Outcome.DELIVERED, Evidence.SEEN, 2),
        (Outcome.DELIVERED, Evidence.RECEIPT, 3),
        (Outcome.ACCEPTED, Evidence.ACCEPTED, 1),
        (Outcome.LOST, None, 1),
    ):
        for _ in range(n):
            deliver(journal, r1, outcome, 0.5 if outcome.reached else None, evidence=evidence)
    journal.finish_run(r1)
    found = samples(journal)
    for name in ("tsunagari_deliveries_total", "tsunagari_last_drill_deliveries"):
        assert value(found, name, outcome="delivered", evidence="seen") == 2
        assert value(found, name, outcome="delivered", evidence="receipt") == 3
        assert value(found, name, outcome="accepted", evidence="accepted") == 1
        assert value(found, name, outcome="lost", evidence="none") == 1
    # a receipt is a confirmed arrival for reachability (5 / 7), as in the scorecard
    assert value(found, "tsunagari_channel_reachability_ratio") == pytest.approx(5 / 7)
    card = build_scorecard(journal, r1)
    assert card["municipalities"][0]["channels"][0]["reachability"] == round(5 / 7, 4)


def test_tls_expiry_from_days_left_or_exact() -> None:
    base = Delivery(
        "r", "s", "1", "n", "mail", "mail", new_token(), Outcome.DELIVERED, sent_at=1_000.0
    )
    assert tls_not_after(base) is None
    with_days = Delivery(
        **{**base.to_dict(), "outcome": Outcome.DELIVERED, "extra": {"tls_days_left": 3}}
    )
    assert tls_not_after(with_days) == 1_000.0 + 3 * 86_400
    exact = Delivery(
        **{
            **base.to_dict(),
            "outcome": Outcome.DELIVERED,
            "extra": {"tls_not_after": "2030-01-01T00:00:00+00:00"},
        }
    )
    assert tls_not_after(exact) == 1_893_456_000.0


def test_events_become_metrics(journal: Journal) -> None:
    r1 = journal.begin_run(S, V)
    deliver(journal, r1, Outcome.DELIVERED, 0.2)
    for answered in (1, 0):  # two roll calls: answered one of them
        event = RollCallEvent(
            step=f"rc{answered}",
            room="131211/chat",
            within_s=5.0,
            delivered=True,
            municipalities=(RollCallParticipant("131211", "足立区", 1, answered, None),),
        )
        journal.record_event(r1, event.kind, event.to_data())
    fallback = FallbackEvent(
        step="fb",
        order=("chat",),
        within_s=5.0,
        escalate_after_s=1.0,
        municipalities=(
            FallbackMunicipality(
                "131211",
                "足立区",
                False,
                None,
                None,
                (FallbackAttempt("chat", "webhook", "lost", "not seen", 0.0, None),),
            ),
        ),
    )
    journal.record_event(r1, fallback.kind, fallback.to_data())
    journal.finish_run(r1)
    found = samples(journal)
    assert value(found, "tsunagari_roll_call_expected") == 2
    assert value(found, "tsunagari_roll_call_answered_ratio") == 0.5
    assert value(found, "tsunagari_fallback_reached") == 0
    assert value(found, "tsunagari_fallback_latency_seconds") is None


def test_scope_selects_groups(journal: Journal) -> None:
    r1 = journal.begin_run(S, V)
    deliver(journal, r1, Outcome.DELIVERED, 0.2)
    deliver(journal, r1, Outcome.DELIVERED, 0.2, code="131016", name="千代田区")
    journal.finish_run(r1)
    r2 = journal.begin_run("other", V)
    deliver(journal, r2, Outcome.DELIVERED, 0.2)
    journal.finish_run(r2)
    only = samples(journal, scenario=S, municipalities=frozenset({"131016"}), drill_level=False)
    assert {dict(lab).get("municipality_code") for _, lab in only} == {"131016"}
    assert {dict(lab).get("scenario") for _, lab in only} == {S}
    assert not any(n.startswith("tsunagari_drill_") for n, _ in only)
    run_level = samples(journal, scenario=S, municipality_level=False)
    assert {n for n, _ in run_level} <= {n for n in CATALOGUE if n.startswith("tsunagari_drill_")}


def test_no_unbounded_labels_and_no_secrets_in_the_output(journal: Journal) -> None:
    r1 = journal.begin_run(S, V)
    sent = [deliver(journal, r1, o, 0.2 if o.reached else None) for o in Outcome]
    journal.finish_run(r1)
    text = exposition(journal).decode()
    for d in sent:
        assert d.token not in text and d.run_id not in text
    assert "+819011110001" not in text  # recipients are not labels
    allowed = {
        "municipality_code",
        "municipality_name",
        "channel_id",
        "channel_kind",
        "scenario",
        "vantage",
        "outcome",
        "evidence",
        "stage",  # drills.core.taxonomy: bounded enumerations too
        "cause",
        "stat",  # the latency standing's p50 / p95 (drills.core.standing.QUANTILES) and
        # the harness's send wait: p50 / p95 / max (drills.metrics.send_wait)
        # tsunagari_municipality_info: one value per registered municipality (the office
        # table, drills.core.places); region is one of its five keys
        "latitude",
        "longitude",
        "region",
        "le",
    }
    for spec in CATALOGUE.values():
        assert set(spec.labels) <= allowed
    for _, labels in sample_set(text):
        assert {k for k, _ in labels} <= allowed
    # the outcome and evidence labels take only their enum values (and "none")
    values = {k: {v for _, lab in sample_set(text) for kk, v in lab if kk == k} for k in allowed}
    assert values["outcome"] == {o.value for o in Outcome}
    assert values["evidence"] <= {e.value for e in Evidence} | {"none"}
    assert values["stat"] <= {"p50", "p95", "max"} | set(QUANTILES)
    assert values["stage"] and values["stage"] <= {s.value for s in Stage}
    assert values["cause"] and values["cause"] <= {c.value for c in Cause}


def test_collectors_use_only_the_registry_they_are_given(journal: Journal) -> None:
    r1 = journal.begin_run(S, V)
    deliver(journal, r1, Outcome.DELIVERED, 0.2)
    journal.finish_run(r1)
    mine = CollectorRegistry()
    JournalCollector(journal, prom_registry=mine)
    assert b"tsunagari_readiness_score" in generate_latest(mine)
    assert b"tsunagari_" not in generate_latest(prometheus_client.REGISTRY)


def test_view_reuses_digests_of_ended_runs(journal: Journal) -> None:
    r1 = journal.begin_run(S, V)
    deliver(journal, r1, Outcome.DELIVERED, 0.2)
    journal.finish_run(r1)
    r2 = journal.begin_run(S, V)
    deliver(journal, r2, Outcome.DELIVERED, 0.2)
    view = JournalView(journal)
    first = {d.run_id: d for d in view.digests()}
    deliver(journal, r2, Outcome.LOST)
    second = {d.run_id: d for d in view.digests()}
    assert second[r1] is first[r1]
    assert sum(second[r2].channels[("131211", "chat")].outcomes.values()) == 2
    journal.finish_run(r2)
    third = {d.run_id: d for d in view.digests()}
    assert third[r2] is not second[r2] and not third[r2].running


def test_registry_comes_from_the_run_when_not_given(tmp_path, journal: Journal) -> None:
    from tests.metrics.support import write_registry

    registry = write_registry(tmp_path)
    r1 = journal.begin_run(S, V, meta={"registry": registry.path})
    deliver(journal, r1, Outcome.DELIVERED, 0.2)
    journal.finish_run(r1)
    found = samples(journal)
    assert (
        value(found, "tsunagari_municipality_drill_interval_seconds", municipality_code="134210")
        == 1.0
    )
    assert (
        value(found, "tsunagari_municipality_drill_interval_seconds", municipality_code="131016")
        == 86_400.0
    )
    os.remove(registry.path)  # a registry that no longer loads is simply not used
    found = samples(journal)
    assert value(found, "tsunagari_municipality_drill_interval_seconds") is None
    # one perfect channel, so redundancy 1 of 2: (0.5 + 0.1 + 0.1) / 0.8 = 87.5
    assert value(found, "tsunagari_readiness_score") == 87.5
