"""Scenario metadata as pytest markers, registered and checked strictly.

    pytestmark = [
        pytest.mark.scenario("首都直下地震 初動参集"),   # the drill's name (default: docstring's first line)
        pytest.mark.disaster("地震"),                  # one of DISASTERS (Japanese or English)
        pytest.mark.severity(5),                       # 1 (minor) … 5 (gravest)
        pytest.mark.deadline("60s"),                   # default time limit of the steps
    ]

``scenario``, ``disaster`` and ``severity`` describe the scenario file (put
them in ``pytestmark``); ``deadline`` may also be set per test function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from drills.core.requirements import ScenarioMistake, parse_seconds
from probes.settings import brief

__all__ = ["DISASTERS", "MARKERS", "ScenarioMeta", "disaster_of", "read_deadline", "read_meta"]

# Canonical Japanese name → English name.
DISASTERS: dict[str, str] = {
    "地震": "earthquake",
    "津波": "tsunami",
    "台風・風水害": "typhoon and flood",
    "風水害": "flood",
    "台風": "typhoon",
    "豪雨": "heavy rain",
    "土砂災害": "landslide",
    "火山": "volcano",
    "雪害": "heavy snow",
    "大規模停電": "blackout",
    "感染症": "pandemic",
    "通信障害": "network outage",
    "その他": "other",
}

MARKERS: dict[str, str] = {
    "scenario": "scenario(name): 訓練の名前 / the drill's name",
    "disaster": "disaster(kind): 想定する災害 / the disaster assumed: " + ", ".join(DISASTERS),
    "severity": "severity(level): 深刻度 1（軽微）〜5（最大） / severity 1 (minor) to 5 (gravest)",
    "deadline": "deadline(duration): 手順の既定の制限時間 / default time limit of the steps, e.g. '60s'",
}


@dataclass(frozen=True)
class ScenarioMeta:
    name: str
    disaster: str | None = None
    severity: int | None = None
    deadline_s: float | None = None

    def journal_meta(self) -> dict[str, Any]:
        return {"disaster": self.disaster, "severity": self.severity, "deadline_s": self.deadline_s}


def _single_arg(marker: Any) -> Any:
    if len(marker.args) != 1 or marker.kwargs:
        raise ScenarioMistake(
            f"@pytest.mark.{marker.name}(...) には値を 1 つだけ書いてください: {brief(marker.args)}",
            f"@pytest.mark.{marker.name}(...) takes exactly one value: {brief(marker.args)}",
        )
    return marker.args[0]


def disaster_of(value: Any) -> str:
    """The canonical (Japanese) disaster name for *value*, Japanese or English."""
    text = value.strip() if isinstance(value, str) else brief(value)
    if text in DISASTERS:
        return text
    for ja, en in DISASTERS.items():
        if text.lower() == en:
            return ja
    raise ScenarioMistake(
        f"未知の災害種別 {text!r}（使えるもの: {'、'.join(DISASTERS)}）",
        f"unknown disaster kind {text!r} (known: {', '.join(DISASTERS.values())})",
    )


def _severity(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
        raise ScenarioMistake(
            f"severity は 1〜5 の整数です: {brief(value)}",
            f"severity must be an integer 1 to 5: {brief(value)}",
        )
    return value


def read_deadline(node: Any) -> float | None:
    marker = node.get_closest_marker("deadline")
    return parse_seconds(_single_arg(marker), "deadline") if marker is not None else None


def read_meta(node: Any, doc: str | None, default_name: str) -> ScenarioMeta:
    """Metadata of a scenario file (a pytest Module node); ScenarioMistake if malformed."""
    name = default_name
    if doc and doc.strip():
        name = doc.strip().splitlines()[0].strip()
    marker = node.get_closest_marker("scenario")
    if marker is not None:
        value = _single_arg(marker)
        if not isinstance(value, str) or not value.strip():
            raise ScenarioMistake(
                "@pytest.mark.scenario には訓練の名前（文字列）を書いてください",
                "@pytest.mark.scenario needs the drill's name (a string)",
            )
        name = value.strip()
    disaster = node.get_closest_marker("disaster")
    severity = node.get_closest_marker("severity")
    return ScenarioMeta(
        name=name,
        disaster=disaster_of(_single_arg(disaster)) if disaster is not None else None,
        severity=_severity(_single_arg(severity)) if severity is not None else None,
        deadline_s=read_deadline(node),
    )
