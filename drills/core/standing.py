"""Standing: how each municipality compares with the others in the same drill.

Safety-confirmation services tell each organisation where it stands among the
organisations of the same drill; this is that comparison, for one drill (one
run: the scorecard's scope). Every tunable number is in :data:`MIN_PARTICIPANTS`,
:data:`DIGITS` and :data:`QUANTILES`; nothing else changes with them.

*Figures.* A municipality's score (higher is better) and, per channel kind, the
p50 and p95 latency of its confirmed arrivals (lower is better). Each figure is
compared only among the municipalities that have it: a municipality with no
score (untested) gets no rank and is not counted in ``n``; one whose channels of
a kind never delivered has no latency of that kind (its failure shows in its
score). Figures are compared as shown (score to 0.1, latency to 0.1 ms), so
what looks tied is tied.

*Too few.* With fewer than :data:`MIN_PARTICIPANTS` (10) municipalities having a
figure, nothing is ranked: the result says "too few to compare"
(:func:`too_few_text`). From 10 on, each one gets:

- *rank*: competition ranking ("1224"): one more than the number strictly
  better, so tied municipalities share the best rank and the next is skipped;
- *percentile*: the midrank percentile rank, ``100 × (worse + ½ × tied) / n``,
  where *worse* counts those strictly worse and *tied* those equal, itself
  included (the best of 10, alone, is 95; all equal are 50), to 0.1;
- *偏差値* (deviation score), as Japanese schools use it: ``50 + 10 × z`` with
  ``z = (x − mean) / σ`` and σ the *population* standard deviation (divide by
  n, not n − 1), to 0.1. For latency the sign is turned, ``z = (mean − x) /
  σ``, so a higher 偏差値 is always better (faster). When σ = 0 (everyone
  equal) every 偏差値 is 50.

The mean and σ are reported one digit finer than the figure (score: 0.01), so
every 偏差値 can be redone by hand from the report.

Worked example: ten scores 90, 80, 80, 70, 60, 60, 60, 50, 30, 20 (and one
untested): mean 60, σ = √(4400 / 10) = 20.98. The 90 ranks 1, percentile
100 × (9 + ½) / 10 = 95, 偏差値 50 + 10 × 30 / 20.98 = 64.3; both 80s rank 2
(the next is 4), percentile 100 × (7 + ½ × 2) / 10 = 80, 偏差値 59.5; the 70
percentile 100 × (6 + ½) / 10 = 65, 偏差値 54.8:

    >>> c = compare({"a": 90, "b": 80, "c": 80, "d": 70, "e": 60, "f": 60, "g": 60,
    ...              "h": 50, "i": 30, "j": 20, "k": None})
    >>> c.population.n, c.population.mean, c.population.sd
    (10, 60.0, 20.98)
    >>> [(s.rank, s.percentile, s.deviation) for s in (c.of["a"], c.of["b"], c.of["d"])]
    [(1, 95.0, 64.3), (2, 80.0, 59.5), (4, 65.0, 54.8)]
    >>> "k" in c.of  # no score: not ranked, not counted
    False

Latency, lower is better: with nine municipalities nothing is compared.

    >>> c = compare({str(i): 0.1 * i for i in range(1, 10)}, lower_is_better=True)
    >>> c.population.compared, c.of["1"].rank, too_few_text(c.population.n, "en")
    (False, None, 'too few to compare (9 municipalities; comparison needs 10)')
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from drills.core.scoring import percentile

__all__ = [
    "DIGITS",
    "MIN_PARTICIPANTS",
    "QUANTILES",
    "Comparison",
    "Population",
    "Standing",
    "compare",
    "drill_standing",
    "kind_latencies",
    "latency_comparisons",
    "too_few_text",
]

# At least this many municipalities must have a figure before it is compared at all.
MIN_PARTICIPANTS = 10
# Figures are compared as shown: score to 0.1 (as scoring rounds it), latency to 0.1 ms.
DIGITS = {"score": 1, "latency": 4}
# The latency quantiles compared per channel kind.
QUANTILES = ("p50", "p95")


def _round(x: float, digits: int = 1) -> float:
    """Round half up, as by hand (float noise below 1e-9 ignored)."""
    exact = Decimal(f"{x:.9f}").quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    return float(exact)


@dataclass(frozen=True)
class Population:
    """The municipalities that have one figure: how many, their mean and σ (population SD)."""

    n: int
    mean: float | None  # None when nobody has the figure
    sd: float | None
    lower_is_better: bool = False

    @property
    def compared(self) -> bool:
        return self.n >= MIN_PARTICIPANTS

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "compared": self.compared,
            "min_participants": MIN_PARTICIPANTS,
            "mean": self.mean,
            "sd": self.sd,
            "better": "lower" if self.lower_is_better else "higher",
        }


@dataclass(frozen=True)
class Standing:
    """One municipality's place for one figure (rank, percentile, 偏差値 None when too few)."""

    value: float
    n: int
    rank: int | None = None
    percentile: float | None = None
    deviation: float | None = None

    @property
    def compared(self) -> bool:
        return self.rank is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "n": self.n,
            "compared": self.compared,
            "rank": self.rank,
            "percentile": self.percentile,
            "deviation": self.deviation,
        }


@dataclass(frozen=True)
class Comparison:
    """One figure compared across a drill: the population and each participant's standing."""

    population: Population
    of: Mapping[str, Standing]  # only the municipalities that have the figure


def compare(
    values: Mapping[str, float | None], *, lower_is_better: bool = False, digits: int = 1
) -> Comparison:
    """Compare one figure (*values*: municipality → figure, None for none) across a drill.

    >>> c = compare({"a": 1.0, "b": 1.0, "c": 2.0, "d": 3.0, **{str(i): 5.0 for i in range(7)}},
    ...             lower_is_better=True)
    >>> [(k, c.of[k].rank) for k in ("a", "b", "c", "d", "0")]
    [('a', 1), ('b', 1), ('c', 3), ('d', 4), ('0', 5)]
    >>> c.of["a"].deviation > 50 > c.of["0"].deviation  # faster is higher
    True
    """
    shown = {k: _round(float(v), digits) for k, v in values.items() if v is not None}
    n = len(shown)
    if n == 0:
        return Comparison(Population(0, None, None, lower_is_better), {})
    mean = statistics.fmean(shown.values())
    sd = statistics.pstdev(shown.values(), mu=mean)
    population = Population(n, _round(mean, digits + 1), _round(sd, digits + 1), lower_is_better)
    if not population.compared:
        return Comparison(population, {k: Standing(v, n) for k, v in shown.items()})
    sign = -1.0 if lower_is_better else 1.0
    of: dict[str, Standing] = {}
    ordered = list(shown.values())
    for k, v in shown.items():
        better = sum(1 for x in ordered if sign * (x - v) > 0)
        tied = sum(1 for x in ordered if x == v)
        worse = n - better - tied
        z = 0.0 if sd == 0 else sign * (v - mean) / sd
        of[k] = Standing(
            v,
            n,
            rank=better + 1,
            percentile=_round(100.0 * (worse + 0.5 * tied) / n),
            deviation=_round(50.0 + 10.0 * z),
        )
    return Comparison(population, of)


def kind_latencies(
    channels: Iterable[tuple[str, str, Sequence[float]]],
) -> dict[tuple[str, str], dict[str, float | None]]:
    """Each municipality's p50 and p95 per channel kind, its channels of that kind pooled.

    *channels* yields (municipality, kind, latencies of its confirmed arrivals); a
    municipality with no arrival of a kind has no entry for it.

    >>> kind_latencies([("a", "mail", [0.1, 0.3]), ("a", "mail", [0.2]), ("a", "sms", [])])
    {('a', 'mail'): {'p50': 0.2, 'p95': 0.29}}
    """
    pooled: dict[tuple[str, str], list[float]] = defaultdict(list)
    for code, kind, latencies in channels:
        pooled[(code, kind)].extend(latencies)
    return {
        key: {q: percentile(v, float(q[1:])) for q in QUANTILES} for key, v in pooled.items() if v
    }


def latency_comparisons(
    latencies: Mapping[tuple[str, str], Mapping[str, float | None]],
) -> dict[str, dict[str, Comparison]]:
    """Per channel kind and quantile, the comparison of :func:`kind_latencies` (kinds sorted)."""
    kinds = sorted({kind for _code, kind in latencies})
    return {
        kind: {
            q: compare(
                {c: v.get(q) for (c, k), v in latencies.items() if k == kind},
                lower_is_better=True,
                digits=DIGITS["latency"],
            )
            for q in QUANTILES
        }
        for kind in kinds
    }


def drill_standing(
    scores: Mapping[str, float | None],
    latencies: Mapping[tuple[str, str], Mapping[str, float | None]],
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The drill's comparison, JSON-ready: (populations, municipality → its standing).

    *scores* maps each municipality of the drill to its score (None: untested);
    *latencies* maps (municipality, channel kind) to ``{"p50": s, "p95": s}``.
    Every municipality in *scores* gets a standing block; a figure it lacks is null.

    >>> pop, per = drill_standing({"a": 80.0, "b": None}, {("a", "mail"): {"p50": 0.3, "p95": 0.5}})
    >>> pop["score"]["n"], per["a"]["score"]["compared"], per["b"]["score"]
    (1, False, None)
    >>> per["a"]["latency"]["mail"]["p95"]["value"], per["b"]["latency"]
    (0.5, {})
    """
    score = compare(scores, digits=DIGITS["score"])
    by_kind = latency_comparisons(latencies)
    populations = {
        "min_participants": MIN_PARTICIPANTS,
        "score": score.population.to_dict(),
        "latency": {
            kind: {q: c.population.to_dict() for q, c in qs.items()} for kind, qs in by_kind.items()
        },
    }
    per: dict[str, dict[str, Any]] = {}
    for code in scores:
        mine = score.of.get(code)
        latency = {
            kind: {q: (c.of[code].to_dict() if code in c.of else None) for q, c in qs.items()}
            for kind, qs in by_kind.items()
            if any(code in c.of for c in qs.values())
        }
        per[code] = {"score": mine.to_dict() if mine else None, "latency": latency}
    return populations, per


def too_few_text(n: int, lang: str) -> str:
    """The bilingual "too few to compare" line (Japanese for ``ja``, else English).

    >>> too_few_text(7, "ja")
    '比較するには参加団体が少なすぎます（7 団体、10 団体以上で比較）'
    """
    if lang == "ja":
        return f"比較するには参加団体が少なすぎます（{n} 団体、{MIN_PARTICIPANTS} 団体以上で比較）"
    return (
        f"too few to compare ({n} municipalit{'y' if n == 1 else 'ies'}; "
        f"comparison needs {MIN_PARTICIPANTS})"
    )
