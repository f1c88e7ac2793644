"""The stored read model: compact digests and the metrics' fold (no servers).

The collector renders a stored fold of each scenario × vantage
(drills.metrics.state.History) instead of every run's digest; these tests pin
that the two give the same exposition, that the fold is reused (not rebuilt)
when nothing old changed, and rebuilt when something did.
"""

from __future__ import annotations

import json
import random
import time

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from drills.core.delivery import Delivery, Evidence, Outcome
from drills.core.journal import Journal, RunStatus
from drills.metrics.collector import exposition, families
from drills.metrics.digest import RunDigest, run_digest
from drills.metrics.state import JournalView
from probes.base import new_token

S, V = "定時", "hq"
CHANNELS = (("chat", "webhook"), ("mail", "mail"), ("sms", "twilio"))
MUNIS = (("131211", "足立区"), ("133086", "奥多摩町"), ("134210", "小笠原村"))
OUTCOMES = (Outcome.DELIVERED, Outcome.LATE, Outcome.LOST, Outcome.ERROR, Outcome.ACCEPTED)


def _run(journal: Journal, rng: random.Random, started: float, finish: bool = True) -> str:
    run_id = journal.begin_run(S, V)
    journal.db.execute("UPDATE runs SET started_at = ? WHERE run_id = ?", (started, run_id))
    for code, name in MUNIS:
        for cid, kind in CHANNELS:
            for _ in range(rng.randint(1, 3)):
                outcome = rng.choice(OUTCOMES)
                latency = round(rng.uniform(0.05, 90.0), 3) if outcome.reached else None
                evidence = {
                    Outcome.DELIVERED: Evidence.SEEN if cid != "sms" else Evidence.RECEIPT,
                    Outcome.LATE: Evidence.SEEN,
                    Outcome.ACCEPTED: Evidence.ACCEPTED,
                }.get(outcome)
                journal.record(
                    Delivery(
                        run_id=run_id,
                        step="s",
                        municipality_code=code,
                        municipality_name=name,
                        channel_id=cid,
                        kind=kind,
                        token=new_token(),
                        outcome=outcome,
                        sent_at=started + 1,
                        delivered_at=started + 1 + latency if latency is not None else None,
                        latency_s=latency,
                        error_bound_s=0.02 if latency is not None else None,
                        slo_latency_s=60.0,
                        evidence=evidence,
                        vantage=V,
                        scenario=S,
                        extra={"tls_days_left": 30} if kind == "mail" else {},
                    )
                )
    if finish:
        journal.finish_run(run_id)
        journal.db.execute(
            "UPDATE runs SET finished_at = ? WHERE run_id = ?", (started + 120, run_id)
        )
    return run_id


def _journal(n: int, seed: int = 3) -> tuple[Journal, list[str]]:
    journal = Journal(":memory:")
    rng = random.Random(seed)
    start = time.time() - n * 3600
    return journal, [_run(journal, rng, start + i * 3600) for i in range(n)]


class _Families(Collector):
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def collect(self):  # type: ignore[no-untyped-def]
        view = JournalView(self.journal)
        yield from families(view.digests(), intervals=view.intervals())


def _from_every_digest(journal: Journal) -> bytes:
    prom = CollectorRegistry()
    prom.register(_Families(journal))
    return generate_latest(prom)


def _totals_row(journal: Journal) -> dict:
    stored = journal.totals(S, V)
    assert stored is not None
    return stored[1]


def test_compact_digest_reads_back_equal():
    journal, runs = _journal(3)
    for run_id in runs:
        made = run_digest(journal, run_id)
        (raw,) = journal.db.execute(
            "SELECT data FROM digests WHERE run_id = ?", (run_id,)
        ).fetchone()
        stored = RunDigest.from_data(json.loads(raw)["digest"])
        assert stored == made  # scores, quantiles, histogram: all derived back exactly
        assert run_digest(journal, run_id) == made


def test_the_fold_renders_what_every_digest_renders():
    journal, runs = _journal(6)
    folded = exposition(journal)
    assert folded == _from_every_digest(journal)
    assert _totals_row(journal)["history"]["head"] == runs[-1]
    # A new run is folded on top of the stored fold, and still agrees.
    _run(journal, random.Random(9), time.time())
    assert exposition(journal) == _from_every_digest(journal)
    assert _totals_row(journal)["history"]["runs"] == 7


def test_a_running_run_adds_to_counters_only():
    journal, _ = _journal(3)
    _run(journal, random.Random(5), time.time(), finish=False)
    assert exposition(journal) == _from_every_digest(journal)
    assert _totals_row(journal)["history"]["runs"] == 3  # the running run is not folded
    text = exposition(journal).decode()
    assert f'tsunagari_drill_running{{scenario="{S}",vantage="{V}"}} 1.0' in text


def test_the_stored_fold_is_reused_without_reading_old_runs(monkeypatch):
    journal, runs = _journal(5)
    exposition(journal)
    read: list[str] = []
    real = JournalView.digest_of

    def counting(self, run):  # type: ignore[no-untyped-def]
        read.append(run if isinstance(run, str) else run["run_id"])
        return real(self, run)

    monkeypatch.setattr(JournalView, "digest_of", counting)
    exposition(journal)
    # Only the runs the readiness gauges name (each municipality's last two scored).
    assert set(read) <= set(runs[-2:])
    read.clear()
    new = _run(journal, random.Random(8), time.time())
    exposition(journal)
    assert set(read) <= {runs[-1], new}


def test_a_change_to_an_old_run_rebuilds_the_fold():
    journal, runs = _journal(4)
    exposition(journal)
    # An old run turns out to have been cut short: the fold must not keep its old status.
    journal.db.execute(
        "UPDATE runs SET status = ? WHERE run_id = ?", (RunStatus.INCOMPLETE, runs[1])
    )
    assert exposition(journal) == _from_every_digest(journal)
    # A run started in the past (another machine's clock, an import) is folded in its place.
    _run(journal, random.Random(11), time.time() - 10 * 3600)
    assert exposition(journal) == _from_every_digest(journal)
    assert _totals_row(journal)["history"]["runs"] == 5


def test_digest_stays_small():
    journal, runs = _journal(1)
    run_digest(journal, runs[0])
    (size,) = journal.db.execute("SELECT LENGTH(data) FROM digests").fetchone()
    channels = len(MUNIS) * len(CHANNELS)
    assert size / channels < 280, size / channels  # bytes per channel (was ~850)


def test_after_prune_the_fold_counts_what_is_left():
    journal, _runs = _journal(6)
    exposition(journal)
    journal.prune(3.5 * 3600)  # the three oldest runs go
    assert len(journal.runs()) == 3
    assert exposition(journal) == _from_every_digest(journal)
    assert _totals_row(journal)["history"]["runs"] == 3
