"""Digests kept in the journal: made once for an ended run, read until the run changes.

The digest of an ended run is stored in the journal (:meth:`Journal.put_digest`) with
:data:`~drills.metrics.digest.run.MODEL_VERSION`, and :func:`run_digest` returns it until
the run changes (its status, end, deliveries or step events), the SLOs it was scored
against change, or the scoring model does; a running run is digested on the fly and
never stored. Also here: whether a run is still running, and when each municipality was
last drilled.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Mapping
from typing import Any

from drills.core.events import run_events
from drills.core.journal import Journal, RunStatus, _pid_alive
from drills.core.scoring import WEIGHTS, Weights
from drills.metrics.digest.run import MODEL_VERSION, RunDigest, SloMap, digest_run, slo_for
from drills.surge.summary import read_surges

__all__ = ["is_running", "last_drilled", "run_digest", "run_municipalities"]


def is_running(run: Mapping[str, Any], journal: Journal | None = None) -> bool:
    """Is *run* still running? A ``running`` run whose process died is not: the journal
    knows (:meth:`Journal.run_alive`: on PostgreSQL whichever machine ran it); without
    one, a run of this host whose pid is gone is not."""
    if run["status"] != RunStatus.RUNNING:
        return False
    if journal is not None:
        return journal.run_alive(run)
    return run.get("host") != socket.gethostname() or _pid_alive(run.get("pid"))


def _revision(journal: Journal, run: Mapping[str, Any]) -> dict[str, Any]:
    """What a stored digest was made from: when any of it changes, it is recomputed."""
    return {
        "status": run["status"],
        "finished_at": run["finished_at"],
        **journal.revision(run["run_id"]),
    }


def _slos_match(digest: RunDigest, slos: SloMap) -> bool:
    return all(
        ch.slo == slo_for(key, slos, ch.delivery_slo_latency) for key, ch in digest.channels.items()
    )


def run_digest(
    journal: Journal,
    run: Mapping[str, Any] | str,
    slos: SloMap | None = None,
    weights: Weights = WEIGHTS,
) -> RunDigest:
    """The digest of *run* (a journal row or a run id): stored if it is still good, else made.

    *slos* are the SLOs to score against; ``None`` accepts whatever SLOs the
    stored digest was scored against (readers that show no score), and scores a
    new one against the defaults. A digest of an ended run is stored; a
    running run's is made on every call. Scored with other *weights* than
    :data:`~drills.core.scoring.WEIGHTS` (another model), it is made and not stored.
    """
    row = journal.run(run) if isinstance(run, str) else run
    running = is_running(row, journal)
    revision = None
    if not running and weights == WEIGHTS:
        revision = _revision(journal, row)
        stored = journal.digest(row["run_id"])
        if stored is not None and stored[0] == MODEL_VERSION:
            data = stored[1]
            if data.get("revision") == revision:
                digest = RunDigest.from_data(data["digest"])
                if slos is None or _slos_match(digest, slos):
                    return digest
    surges, bad_surges = read_surges(journal.events(row["run_id"], "surge"))
    last_event_at = journal.last_event_at(row["run_id"])
    digest = digest_run(
        row,
        journal.deliveries(row["run_id"]),
        run_events(journal, row["run_id"]),
        slos or {},
        running,
        weights,
        last_event_at=last_event_at,
        surges=surges,
        surges_unreadable=bad_surges,
    )
    if revision is not None:
        journal.put_digest(
            row["run_id"], MODEL_VERSION, {"revision": revision, "digest": digest.to_data()}
        )
    return digest


def run_municipalities(journal: Journal, run_id: str) -> set[str]:
    """Codes of the municipalities with a delivery in *run_id* (one indexed query)."""
    return journal.run_municipalities(run_id)


def last_drilled(
    journal: Journal, codes: Iterable[str], until: float, known: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Start time of each municipality's most recent drill at or before *until*.

    Walks runs newest first and stops as soon as every code in *codes* is
    found, so the cost follows how far back the oldest of them was drilled,
    not the size of the journal. *known*: times already known (not looked up).
    """
    wanted = set(codes) - set(known or {})
    out: dict[str, float] = dict(known or {})
    if not wanted:
        return out
    for run_id, started_at in journal.run_starts(until):
        found = run_municipalities(journal, run_id) & wanted
        for code in found:
            out[code] = float(started_at)
        wanted -= found
        if not wanted:
            break
    return out
