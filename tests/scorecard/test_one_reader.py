"""One drill, one journal, three readers, one value (issue 13, "Must show").

A real drill runs through the local simulators of every kind (chat/webhook,
mail, SMS/twilio): a broadcast, a fallback under the drill's own outage and a
roll call. The journal it leaves is fed to the scorecard
(:func:`drills.reporting.scorecard.build_scorecard`), the metrics (the exposition text of
:class:`drills.metrics.collector.JournalCollector`) and the vantage view
(:func:`drills.reporting.vantage.vantage_view`). For every municipality × channel they
must show one reachability, one p50 and one p95, and for every municipality
one roll-call and one fallback result — the values worked out here from the
journal's rows with :mod:`drills.core.scoring`'s formulas.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from drills.core.events import FallbackEvent, RollCallEvent, run_events
from drills.core.journal import Journal
from drills.core.registry import load_registry
from drills.core.scoring import percentile, reachability
from drills.metrics.collector import exposition
from drills.reporting.scorecard import build_scorecard
from drills.reporting.vantage import vantage_view
from tests.metrics.support import sample_set

REGISTRY = """\
defaults:
  slo: {latency: 2s, reachability: 0.9}
municipalities:
  - code: "130001"
    name: 東京都
    channels:
      - {id: chat, kind: webhook, sim: {latency: 10ms}}
  - code: "131211"
    name: 足立区
    channels:
      - {id: chat, kind: webhook, sim: {latency: 30ms}}
      - {id: mail, kind: mail, to: drill@adachi.example.lg.jp, sim: {latency: 40ms}}
      - {id: sms, kind: twilio, to: ["+819011110001"], status_callback: {}, sim: {latency: 60ms}}
  - code: "131016"
    name: 千代田区
    channels:
      - {id: chat, kind: webhook, sim: {latency: {dist: uniform, low: 20ms, high: 90ms}}}
      - {id: mail, kind: mail, to: drill@chiyoda.example.lg.jp, sim: {latency: 50ms}}
      - {id: sms, kind: twilio, to: ["+819011110002"], status_callback: {}, sim: {outage: true}}
  - code: "134210"
    name: 小笠原村
    channels:
      - {id: chat, kind: webhook, sim: {reject: auth}}
      - {id: mail, kind: mail, to: drill@ogasawara.example.lg.jp, sim: {latency: 70ms, loss: 0.5}}
      - {id: sms, kind: twilio, to: ["+819011110003"], status_callback: {}, sim: {latency: 80ms}}
"""


@pytest.fixture(scope="module")
def drilled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    from drills.operator.scenario import open_drill

    where = tmp_path_factory.mktemp("one-reader")
    reg, jpath = where / "registry.yaml", where / "journal.sqlite"
    reg.write_text(REGISTRY, encoding="utf-8")
    with open_drill(str(reg), str(jpath), scenario="one-reader", seed=5, lang="en") as drill:
        drill.broadcast("参集してください", timeout="1s", repeat=3, step="初動参集")
        with drill.outage("chat", to="足立区"):
            drill.fallback(
                "代替経路で連絡",
                order=["chat", "mail", "sms"],
                to=["足立区", "千代田区", "小笠原村"],
                within="3s",
                escalate_after="400ms",
                step="代替経路",
            )
        drill.roll_call("点呼です", room="東京都/chat", within="1s", simulated={"delay": "100ms"})
    with Journal(jpath) as journal:
        (run,) = journal.runs()
    return reg, jpath, run["run_id"]


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _gauge(found: dict, name: str, **labels: str) -> float | None:
    hits = [
        v
        for (n, lab), v in found.items()
        if n == name and all(dict(lab).get(k) == x for k, x in labels.items())
    ]
    assert len(hits) <= 1, (name, labels, hits)  # one value, never two
    return hits[0] if hits else None


def test_scorecard_metrics_and_vantage_view_show_one_value(drilled):
    reg_path, jpath, run_id = drilled
    registry = load_registry(str(reg_path), check_secrets=False)
    with Journal(jpath) as journal:
        deliveries = journal.deliveries(run_id)
        events = run_events(journal, run_id)
        card = build_scorecard(journal, run_id, registry)
        metrics = sample_set(exposition(journal, registry).decode())
        view = vantage_view([journal])

    # What the journal says, worked with scoring's formulas.
    outcomes: dict[tuple[str, str], Counter[str]] = {}
    latencies: dict[tuple[str, str], list[float]] = {}
    for d in deliveries:
        key = (d.municipality_code, d.channel_id)
        outcomes.setdefault(key, Counter())[d.outcome.value] += 1
        if d.outcome.reached and d.latency_s is not None:
            latencies.setdefault(key, []).append(d.latency_s)
    assert len(outcomes) == 10  # every registered channel was drilled
    kinds = {d.kind for d in deliveries}
    assert kinds == {"webhook", "mail", "twilio"}  # the real kinds, no stand-ins
    assert "drill_outage" in {d.outcome.value for d in deliveries}  # the outage happened

    cards = {(m["code"], c["id"]): c for m in card["municipalities"] for c in m["channels"]}
    (scenario,) = view["scenarios"]
    cells = {
        (m["code"], c["id"]): c["by_vantage"]["default"]
        for m in scenario["municipalities"]
        for c in m["channels"]
    }
    assert set(cards) == set(cells) == set(outcomes)
    for key, counts in outcomes.items():
        code, cid = key
        expected_reach = round(reachability(counts), 4)
        lat = latencies.get(key, [])
        expected_p50, expected_p95 = _r(percentile(lat, 50)), _r(percentile(lat, 95))
        labels = {"municipality_code": code, "channel_id": cid}
        # reachability
        assert cards[key]["reachability"] == expected_reach, key
        assert cells[key]["reachability"] == expected_reach, key
        told = _gauge(metrics, "tsunagari_channel_reachability_ratio", **labels)
        counted = sum(n for o, n in counts.items() if o not in ("error", "drill_outage"))
        if counted - counts["accepted"] > 0 or counts["delivered"] + counts["late"]:
            assert _r(told) == expected_reach, key
        else:  # the drill could not tell: no gauge rather than a made-up 0
            assert told is None, key
        # p50 / p95
        for q, expected in (("p50", expected_p50), ("p95", expected_p95)):
            assert cards[key][f"latency_{q}_s"] == expected, (key, q)
            assert cells[key][f"latency_{q}_s"] == expected, (key, q)
            gauge = _gauge(metrics, f"tsunagari_channel_latency_{q}_seconds", **labels)
            assert _r(gauge) == expected, (key, q)

    # Roll call and fallback, per municipality.
    rc = events.roll_call_ratios()
    fb = events.fallback_ratios()
    assert events.of(RollCallEvent) and events.of(FallbackEvent)
    assert {"131211", "131016", "134210"} <= set(fb)
    munis = {m["code"]: m for m in card["municipalities"]}
    results = {m["code"]: m["by_vantage"]["default"] for m in scenario["municipalities"]}
    for code, muni in munis.items():
        labels = {"municipality_code": code}
        roll = rc.get(code)
        want_rc = None if roll is None else {"responded": roll.good, "expected": roll.total}
        assert muni["roll_call"] == results[code]["roll_call"] == want_rc, code
        if roll is not None and roll.total > 0:
            assert _gauge(metrics, "tsunagari_roll_call_expected", **labels) == roll.total
            assert _gauge(metrics, "tsunagari_roll_call_answered", **labels) == roll.good
        chain = fb.get(code)
        want_fb = None if chain is None else {"passed": chain.good, "total": chain.total}
        assert muni["fallback"] == results[code]["fallback"] == want_fb, code
        reached = _gauge(metrics, "tsunagari_fallback_reached", **labels)
        if chain is None or chain.total == 0:
            assert reached is None, code
        else:
            assert reached == (1.0 if chain.good == chain.total else 0.0), code
    # The fallback under the outage escalated past 足立区's chat and still reached it.
    assert fb["131211"].good == fb["131211"].total == 1.0
    assert munis["131211"]["fallback"] == {"passed": 1.0, "total": 1.0}


def test_vantage_p50_leaves_out_an_arrival_without_a_latency():
    from drills.core.delivery import Delivery, Evidence, Outcome

    journal = Journal(":memory:")
    run = journal.begin_run("s", "LGWAN")
    for i, latency in enumerate((2.0, 4.0, None)):  # a receipt with no measured latency
        journal.record(
            Delivery(
                run, "s", "131211", "足立区", "sms", "twilio", f"TSG-{i}", Outcome.DELIVERED,
                latency_s=latency, evidence=Evidence.RECEIPT, vantage="LGWAN", scenario="s",
            )
        )  # fmt: skip
    journal.finish_run(run)
    (scenario,) = vantage_view([journal])["scenarios"]
    cell = scenario["municipalities"][0]["channels"][0]["by_vantage"]["LGWAN"]
    card = build_scorecard(journal, run)["municipalities"][0]["channels"][0]
    assert cell["latency_p50_s"] == card["latency_p50_s"] == 3.0  # not 2.0 (None read as 0 s)
    assert cell["reachability"] == card["reachability"] == 1.0
