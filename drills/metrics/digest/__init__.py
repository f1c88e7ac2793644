"""The digest of one run: everything a reader shows about it, computed once.

A :class:`RunDigest` says, per municipality × channel (:class:`ChannelDigest`):
counts by outcome and by evidence, reachability (:func:`drills.core.scoring.reachability`),
p50/p95 (:func:`drills.core.scoring.percentile`), the latency histogram, the
largest observer error bound, the TLS expiry, the channel's score
(:func:`drills.core.scoring.score_channel`) and its records not delivered by stage
and cause (:func:`drills.core.taxonomy.classify_failure`; records not judged — a harness
fault, an interruption — apart); per municipality (:class:`MuniDigest`):
its fallback, roll-call and acknowledgement ratios, read from the run's step
events through :mod:`drills.core.events`; per step and for the whole run, the
harness's own wait before sending (:mod:`drills.metrics.send_wait`, never latency).
The scorecard, the metrics and the vantage view are views of it; none of them
reads deliveries or step events.

A municipality's score is *not* stored: it contains freshness, which depends
on the moment it is judged at ("now", or the run's end). Readers apply it at
read time with :meth:`RunDigest.municipality_score`, from the stored channel
scores and ratios (:func:`drills.core.scoring.score_municipality`).

The digest of an ended run is stored in the journal (:meth:`Journal.put_digest`)
with :data:`MODEL_VERSION`, and :func:`run_digest` returns it until the run
changes (its status, end, deliveries or step events), the SLOs it was scored
against change, or the scoring model does; a running run is digested on the
fly and never stored.

    >>> from drills.core.delivery import Delivery, Outcome
    >>> d = Delivery("r", "s", "131211", "足立区", "chat", "webhook", "TSG-0", Outcome.DELIVERED,
    ...              latency_s=0.4)
    >>> ch = digest_channel([d, d], (0.99, 60.0))
    >>> ch.reachability, ch.quantiles["p50"], ch.score.score if ch.score else None
    (1.0, 0.4, 100.0)

The parts: :mod:`~drills.metrics.digest.channel` (one channel),
:mod:`~drills.metrics.digest.run` (one run, pure) and :mod:`~drills.metrics.digest.stored`
(kept in the journal); readers import from here.
"""

from drills.metrics.digest.channel import (
    LATENCY_BUCKETS,
    NO_EVIDENCE,
    QUANTILES,
    ChannelDigest,
    digest_channel,
    tls_not_after,
)
from drills.metrics.digest.run import (
    DEFAULT_SLO_REACHABILITY,
    DIGEST_FORMAT,
    MODEL_VERSION,
    MuniDigest,
    RunDigest,
    SloMap,
    StepSummary,
    digest_run,
)
from drills.metrics.digest.stored import (
    is_running,
    last_drilled,
    run_digest,
    run_municipalities,
)

__all__ = [
    "DEFAULT_SLO_REACHABILITY",
    "DIGEST_FORMAT",
    "LATENCY_BUCKETS",
    "MODEL_VERSION",
    "NO_EVIDENCE",
    "QUANTILES",
    "ChannelDigest",
    "MuniDigest",
    "RunDigest",
    "SloMap",
    "StepSummary",
    "digest_channel",
    "digest_run",
    "is_running",
    "last_drilled",
    "run_digest",
    "run_municipalities",
    "tls_not_after",
]
