"""What the oracle checked in this session: drills, records, seeds, margins per kind."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.oracle.harness import OracleRun

__all__ = ["TALLY", "Tally"]


@dataclass
class Tally:
    drills: int = 0
    records: int = 0
    disagreements: int = 0
    wall_s: float = 0.0
    seeds: set[tuple[str, int]] = field(default_factory=set)
    outcomes: dict[str, int] = field(default_factory=dict)
    margins: dict[str, float] = field(default_factory=dict)  # kind → max |measured−truth|−bound
    sightings: dict[str, int] = field(default_factory=dict)  # kind → reached records judged

    def add(self, case: str, run: OracleRun) -> None:
        self.drills += 1
        self.records += len(run.deliveries)
        self.disagreements += len(run.disagreements())
        self.wall_s += run.wall_s
        self.seeds.add((case, run.plan.seed))
        for outcome, n in run.by_outcome().items():
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + n
        for kind, gap in run.margins().items():
            self.margins[kind] = max(self.margins.get(kind, float("-inf")), gap)
        for d in run.deliveries:
            if d.outcome.reached:
                self.sightings[d.kind] = self.sightings.get(d.kind, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "drills": self.drills,
            "records": self.records,
            "seeds": len(self.seeds),
            "disagreements": self.disagreements,
            "drill_wall_s": round(self.wall_s, 2),
            "outcomes": self.outcomes,
            "max_gap_minus_bound_s": {k: round(v, 4) for k, v in sorted(self.margins.items())},
            "sightings": dict(sorted(self.sightings.items())),
        }

    def lines(self) -> list[str]:
        out = [
            f"{self.drills} drills, {self.records} records, {len(self.seeds)} seeded cases, "
            f"{self.disagreements} disagreements, {self.wall_s:.1f} s in drills",
            "outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())),
            "largest |sent + latency − visible| − error_bound_s per kind "
            "(≤ 0.020 s is within the rule):",
        ]
        for kind, gap in sorted(self.margins.items()):
            out.append(
                f"  {kind:<11} {gap * 1000:+8.1f} ms over {self.sightings.get(kind, 0)} sightings"
            )
        return out


TALLY = Tally()
