"""What must hold after a drill step, judged per municipality, told in ja or en.

A step's ``expect(...)`` turns its results into one :class:`Verdict` per
municipality — *met*, *missed*, or *harness* (the harness could not look, so
nothing can be judged) — each with the rows that explain it (channel, outcome,
reason). The pytest plugin reports each verdict as a subtest; without pytest a
miss raises :class:`RequirementMissed` listing every municipality that missed.

>>> parse_share("99%"), parse_share(0.5), parse_share("99.5 %")
(0.99, 0.5, 0.995)
>>> percent(0.995), percent(1.0)
('99.5%', '100%')
"""

from __future__ import annotations

import enum
import functools
import inspect
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from drills.core.delivery import Delivery, Outcome
from drills.core.errors import HarnessError, ScenarioError
from drills.core.i18n import Text
from drills.core.taxonomy import Failure, classify_delivery
from probes.settings import brief, parse_duration

__all__ = [
    "OUTCOME_LABELS",
    "HarnessFault",
    "RequirementMissed",
    "Row",
    "ScenarioMistake",
    "Status",
    "Verdict",
    "caller_location",
    "judge_broadcast",
    "located",
    "parse_seconds",
    "parse_share",
    "percent",
    "render_details",
    "render_summary",
]

OUTCOME_LABELS: dict[str, tuple[str, str]] = {
    "delivered": ("到達", "delivered"),
    "late": ("遅延", "late"),
    "accepted": ("受付のみ", "accepted only"),
    "lost": ("不達", "lost"),
    "rejected": ("拒否", "rejected"),
    "error": ("ハーネス障害", "harness error"),
    "drill_outage": ("訓練による停止", "drill's own outage"),
    "unable": ("参加不能", "cannot take part"),
    "skipped": ("停止中で省略", "skipped (taken away)"),
    "unanswered": ("応答なし", "no answer"),
}

_DRILLS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PROBES_DIR = os.path.join(os.path.dirname(_DRILLS_DIR), "probes")


def caller_location() -> str | None:
    """``file:line`` of the nearest caller outside the harness (the scenario line)."""
    frame = inspect.currentframe()
    while frame is not None:
        path = os.path.abspath(frame.f_code.co_filename)
        if (
            not path.startswith((_DRILLS_DIR + os.sep, _PROBES_DIR + os.sep))
            and "contextlib" not in path
        ):
            return f"{_relative(path)}:{frame.f_lineno}"
        frame = frame.f_back
    return None


def _relative(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


class ScenarioMistake(ScenarioError):
    """The scenario asks for something impossible; names the scenario line (``where``)."""

    def __init__(self, ja: str, en: str, where: str | None = None) -> None:
        super().__init__(f"{ja} / {en}")
        self.ja, self.en, self.where = ja, en, where

    def render(self, lang: str = "ja") -> str:
        text = self.ja if lang == "ja" else self.en
        return f"{self.where}: {text}" if self.where else text


class Status(enum.StrEnum):
    MET = "met"
    MISSED = "missed"
    HARNESS = "harness"


@dataclass(frozen=True, slots=True)
class Row:
    """One channel's part in a verdict: what happened and why."""

    channel: str
    kind: str
    outcome: str  # an Outcome value, or "skipped" / "unanswered"
    reason: str = ""  # "日本語 / English" or plain
    latency_s: float | None = None
    stage: str = ""  # where the chain broke, cause: why (drills.core.taxonomy; "" if not told)
    cause: str = ""

    def render(self, t: Text) -> str:
        ja, en = OUTCOME_LABELS.get(self.outcome, (self.outcome, self.outcome))
        lat = f" {self.latency_s:.2f}s" if self.latency_s is not None else ""
        reason = f" — {t.pick(self.reason)}" if self.reason else ""
        return f"{self.channel} [{self.kind}] {t(ja, en)}{lat}{reason}"


@dataclass(frozen=True)
class Verdict:
    """One municipality against one requirement."""

    code: str
    name: str
    name_en: str | None
    status: Status
    summary_ja: str
    summary_en: str
    rows: tuple[Row, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def met(self) -> bool:
        return self.status is Status.MET

    def label(self, lang: str) -> str:
        name = self.name if lang == "ja" or not self.name_en else self.name_en
        return f"{name} ({self.code})"

    def render(self, lang: str = "ja", where: str | None = None) -> str:
        t = Text(lang)
        head = {
            Status.MET: t("要件達成", "requirement met"),
            Status.MISSED: t("要件未達", "requirement missed"),
            Status.HARNESS: t("判定不能（ハーネスの障害）", "cannot judge (harness fault)"),
        }[self.status]
        prefix = f"{where}: " if where else ""
        lines = [f"{prefix}{self.label(lang)}: {head} — {t(self.summary_ja, self.summary_en)}"]
        lines += ["    " + row.render(t) for row in self.rows]
        return "\n".join(lines)


class _VerdictsError(Exception):
    """Raised with the verdicts that were not met, rendered with *where* (the scenario line)."""

    def __init__(
        self, verdicts: Sequence[Verdict], where: str | None = None, lang: str = "ja"
    ) -> None:
        self.verdicts = list(verdicts)
        self.where, self.lang = where, lang
        super().__init__(render_details(self.verdicts, lang, where))


class RequirementMissed(_VerdictsError, AssertionError):
    """One or more municipalities missed a requirement (exit code 1)."""


class HarnessFault(_VerdictsError, HarnessError):
    """The harness could not look for some municipality; nothing could be judged (exit code 3)."""


def render_details(verdicts: Sequence[Verdict], lang: str, where: str | None = None) -> str:
    """Every verdict with its rows, each naming *where* (the scenario line)."""
    return "\n".join(v.render(lang, where) for v in verdicts)


def render_summary(verdicts: Sequence[Verdict], lang: str, where: str | None = None) -> str:
    """Every failing municipality, one line each (details are in its own subtest)."""
    t = Text(lang)
    missed = [v for v in verdicts if v.status is Status.MISSED]
    unjudged = [v for v in verdicts if v.status is Status.HARNESS]
    head = t(
        f"要件を満たさない団体: {len(missed)}",
        f"municipalities not meeting the requirement: {len(missed)}",
    )
    if unjudged:  # could not be judged (observer/harness fault): never counted as missed
        head += t(f"（判定不能: {len(unjudged)}）", f" (could not be judged: {len(unjudged)})")
    lines = [f"{where}: {head}" if where else head]
    for v in missed + unjudged:
        channels = ", ".join(dict.fromkeys(r.channel for r in v.rows))
        lines.append(
            f"    {v.label(lang)}: {t(v.summary_ja, v.summary_en)}"
            + (f" [{channels}]" if channels else "")
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- parsing


def parse_share(value: Any, what: str = "reached") -> float:
    """A share from ``"99%"``, ``"99.5 %"`` or ``0.99``; ScenarioMistake if malformed."""
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, str):
            text = value.strip()
            share = float(text[:-1].strip()) / 100 if text.endswith("%") else float(text)
        else:
            share = float(value)
    except (TypeError, ValueError):
        raise ScenarioMistake(
            f'{what}= の値 {value!r} を読めません（例: "99%" または 0.99）',
            f'cannot read {what}={value!r} (write e.g. "99%" or 0.99)',
        ) from None
    if not 0.0 < share <= 1.0:
        raise ScenarioMistake(
            f"{what}= は 0% より大きく 100% 以下にしてください（{value!r}）",
            f"{what}= must be above 0% and at most 100% (got {value!r})",
        )
    return round(share, 6)


def parse_seconds(value: Any, what: str = "within") -> float:
    """Seconds from ``"60s"``, ``"2m"`` or a number; ScenarioMistake if malformed."""
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise ScenarioMistake(
            f'{what}= の時間 {brief(value)} を読めません（例: "60s"、"2m"、30）',
            f'cannot read the duration {what}={brief(value)} (write e.g. "60s", "2m" or 30)',
        ) from None
    if seconds <= 0:
        raise ScenarioMistake(
            f"{what}= は 0 秒より長くしてください", f"{what}= must be longer than 0 s"
        )
    return seconds


def percent(share: float) -> str:
    return f"{share * 100:.4g}%"


# --------------------------------------------------------------------------- judging


def _row(d: Delivery, within: float | None) -> Row:
    outcome = d.outcome.value
    reason = d.reason
    if d.outcome.reached and within is not None and (d.latency_s or 0.0) > within:
        outcome = "late"
        reason = f"{within:g} 秒を超えて到達 / arrived after {within:g} s"
    failure = classify_delivery(outcome, d.kind, d.reason, d.extra)
    stage, cause = "", ""  # delivered, or not judged (a harness fault: the verdict is harness)
    if isinstance(failure, Failure):
        stage, cause = failure.stage.value, failure.cause.value
    return Row(d.channel_id, d.kind, outcome, reason, d.latency_s, stage, cause)


def _ok(d: Delivery, within: float | None) -> bool:
    if within is None:
        return d.outcome is Outcome.DELIVERED
    return d.outcome.reached and (d.latency_s or 0.0) <= within


def judge_broadcast(
    deliveries: Iterable[Delivery],
    reached: float,
    within: float | None,
    names_en: dict[str, str | None] | None = None,
) -> list[Verdict]:
    """Per municipality: is the share of deliveries seen (within *within*) ≥ *reached*?

    ``within=None`` means "within each channel's SLO" (outcome ``delivered``).
    Any harness ``error`` makes the municipality's verdict ``harness``. Messages sent
    into the drill's own outage (``drill_outage``) are shown but not counted.

    Verdicts come in the order of *names_en* (the registry's municipalities), then by
    code; each verdict's rows by channel and recipient — never in the order the
    deliveries happened to finish, so a rerun reads the same.
    """
    groups: dict[str, list[Delivery]] = {}
    for d in deliveries:
        groups.setdefault(d.municipality_code, []).append(d)
    place = {code: i for i, code in enumerate(names_en or ())}
    groups = {
        code: sorted(every, key=lambda d: (d.channel_id, d.recipient or ""))
        for code, every in sorted(
            groups.items(), key=lambda kv: (place.get(kv[0], len(place)), kv[0])
        )
    }
    when_ja = f"{within:g} 秒以内" if within is not None else "SLO 以内"
    when_en = f"within {within:g} s" if within is not None else "within the SLO"
    out = []
    for code, every in groups.items():
        items = [d for d in every if d.outcome is not Outcome.DRILL_OUTAGE]
        ok = sum(_ok(d, within) for d in items)
        errors = [d for d in items if d.outcome is Outcome.ERROR]
        share = ok / len(items) if items else 1.0  # all sent into the drill's own outage
        rows = tuple(_row(d, within) for d in every if not _ok(d, within))
        if errors:
            status = Status.HARNESS
        else:
            status = Status.MET if share >= reached - 1e-9 else Status.MISSED
        need = percent(reached)
        out.append(
            Verdict(
                code,
                every[0].municipality_name,
                (names_en or {}).get(code),
                status,
                f"{when_ja}の到達 {ok}/{len(items)}（{percent(share)}、要件 {need} 以上）",
                f"reached {when_en}: {ok}/{len(items)} ({percent(share)}, needs ≥ {need})",
                rows,
                {"reached": ok, "sent": len(items), "share": share},
            )
        )
    return out


_P = ParamSpec("_P")
_R = TypeVar("_R")


def located(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Mistakes raised by a step name the scenario line that called it."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return fn(*args, **kwargs)
        except ScenarioMistake as exc:
            if exc.where is None:
                exc.where = caller_location()
            raise

    return wrapper
