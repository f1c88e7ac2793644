"""A real drill over simulated chat services: each fault comes out with its stage and cause.

One drill (``tests/faults/simdrill.py``: the operator API over a file journal, checked
for no traceback, a ``finished`` run and agreement with the simulators' ledgers) of
four municipalities, one fault each, injected through the simulator's hook:

    131211 slack       401 on every send               rejected "invalid_auth"  send · auth
    131016 mattermost  429 on every send (no retries)  rejected "429"           send · congestion
    132012 webhook     200 text/html (a proxy's page)  lost "not_seen"          transit · connection
    134210 matrix      every observer read cut off     error                    far end · connection
    133086 lineworks   reset mid-response (taken)      delivered: no failure (the far end took it)

The records' ``extra["reason_code"]`` is read back from the journal file, and the
scorecard built from it lists the three municipalities no message reached.
"""

from __future__ import annotations

from pathlib import Path

from drills.core.delivery import Outcome
from drills.core.journal import Journal
from drills.core.taxonomy import Cause, Failure, Stage, classify_delivery
from drills.reporting.scorecard import build_scorecard
from probes.sim.faults import Fault
from tests.faults.cases_chat import THROTTLE, UNAUTHORIZED
from tests.faults.simdrill import sim_drill


def _channel(code: str, name: str, kind: str) -> str:
    return f"""\
  - code: "{code}"
    name: {name}
    channels:
      - id: {kind}
        kind: {kind}
        max_retries: 0
        request_timeout: 2s
        sim: {{latency: 30ms}}
"""


# One kind per municipality: each kind has its own simulator, and a fault is the simulator's.
PLAN = (
    ("131211", "足立区", "slack"),
    ("131016", "千代田区", "mattermost"),
    ("132012", "八王子市", "webhook"),
    ("134210", "小笠原村", "matrix"),
    ("133086", "奥多摩町", "lineworks"),
)
REGISTRY = "defaults:\n  slo: {latency: 3s}\nmunicipalities:\n" + "".join(
    _channel(*row) for row in PLAN
)
FAULTS = {
    "131211": Fault("send", "status", 401, UNAUTHORIZED["slack"][0], times=0),
    "131016": Fault(
        "send", "status", 429, THROTTLE["mattermost"][1], THROTTLE["mattermost"][0], times=0
    ),
    "132012": Fault("send", "garbage", times=0),
    "134210": Fault("read", "disconnect", times=0),
    "133086": Fault("send", "disconnect"),
}
EXPECTED = {
    "131211": (Outcome.REJECTED, Failure(Stage.SEND, Cause.AUTH), "invalid_auth"),
    "131016": (Outcome.REJECTED, Failure(Stage.SEND, Cause.CONGESTION), "429"),
    "132012": (Outcome.LOST, Failure(Stage.TRANSIT, Cause.CONNECTION), "not_seen"),
    "134210": (Outcome.ERROR, Failure(Stage.FAR_END, Cause.CONNECTION), None),
    "133086": (Outcome.DELIVERED, None, None),
}


def test_each_fault_is_journalled_with_its_stage_and_cause(tmp_path: Path) -> None:
    with sim_drill(tmp_path, REGISTRY) as run:
        for code, _name, kind in PLAN:
            sim = run.sim(kind)
            run.on_loop(lambda s=sim, c=code, k=kind: s.inject(f"{c}/{k}", FAULTS[c]))
        run.broadcast(2.5)  # as the fault matrix: every fault here settles well inside it
    with Journal(run.path) as journal:  # read back from the file, as a report would
        records = {d.municipality_code: d for d in journal.deliveries(run.run_id)}
        card = build_scorecard(journal, run.run_id)
    for code, (outcome, failure, reason_code) in EXPECTED.items():
        d = records[code]
        assert d.outcome is outcome, (code, d.outcome, d.reason)
        assert classify_delivery(d.outcome.value, d.kind, d.reason, d.extra) == failure, (
            code,
            d.extra.get("reason_code"),
            d.reason,
        )
        if failure is not None:
            assert d.extra.get("reason_code"), (code, d.extra)
        if reason_code is not None:
            assert d.extra["reason_code"] == reason_code, (code, d.extra)
    groups = {
        (g["stage"], g["cause"]): [m["code"] for m in g["municipalities"]]
        for g in card["failures"]["unreachable"]
    }
    assert groups == {
        ("send", "auth"): ["131211"],
        ("send", "congestion"): ["131016"],
        ("transit", "connection"): ["132012"],
    }
    assert [u["code"] for u in card["failures"]["unjudged"]] == ["134210"]
