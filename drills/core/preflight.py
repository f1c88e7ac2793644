"""Running preflights: many targets at once, timed out, rate-limited and cached.

One :class:`PreflightRunner` serves ``tsunagari check``, ``tsunagari serve``'s
``/probe`` and :meth:`Drill.preflight`::

    runner = PreflightRunner(min_interval_s=60)
    results = await runner.check_all(registry.targets(["131211"]))
    results[0].report.ok, results[0].age_s, results[0].cached

Safety (a 15 s Prometheus scrape must not log in every 15 s):

- *cache*: a target checked less than ``min_interval_s`` ago (per target key
  or kind in ``intervals``) is answered from the cache, saying its age;
- *one at a time*: concurrent asks for one target share one check;
- *rate limit per provider* (kind): at most ``calls`` checks per ``per_s``
  (LINE WORKS allows 10 API requests a minute; a check makes ~3). A check the
  limit holds back waits for its turn within the target's timeout, else the
  last answer is given (with its age), else a report *skipped* with the reason;
- *timeout per target*: a check cut off names the phase that was running.

Pure parts (:class:`RateWindow`, :class:`Checked`, :func:`stop_message`) are
apart from the I/O of running probes.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from drills.core.errors import DrillSafetyError
from drills.core.registry import Target
from drills.core.requirements import ScenarioMistake
from probes.base import Probe, ProbeEnv
from probes.preflight import (
    PhaseResult,
    PhaseTimer,
    PreflightReport,
    Preflights,
    Reason,
    timer_sink,
)
from probes.settings import parse_duration

__all__ = [
    "DEFAULT_LIMITS",
    "Checked",
    "PreflightFailed",
    "PreflightRunner",
    "RateLimit",
    "RateWindow",
    "limits_with",
    "parse_interval",
    "parse_limit",
    "stop_message",
]


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``calls`` checks per ``per_s`` seconds for one provider."""

    calls: int
    per_s: float


# Checks (not requests) per provider. A check makes 2–3 API requests.
DEFAULT_LIMITS: dict[str, RateLimit] = {
    "lineworks": RateLimit(3, 60.0),  # LINE WORKS: 10 requests/min per app
    "slack": RateLimit(20, 60.0),  # auth.test / conversations.info: tier 3+ (50+/min)
    "teams": RateLimit(20, 60.0),  # Microsoft Graph channel reads: well below throttling
    "twilio": RateLimit(30, 60.0),  # account + number + balance per check
}


def parse_limit(text: str) -> tuple[str, RateLimit | None]:
    """A ``--rate-limit`` value: ``KIND=CALLS/DURATION``, or ``KIND=off`` for none.

    >>> parse_limit("lineworks=3/60s")
    ('lineworks', RateLimit(calls=3, per_s=60.0))
    >>> parse_limit("slack=off")
    ('slack', None)
    """
    from drills.core.registry.model import known_kinds

    kind, _, rule = text.partition("=")
    kind, rule = kind.strip(), rule.strip()
    if kind not in known_kinds():
        raise ScenarioMistake(
            f"--rate-limit {text!r}: 種類 {kind!r} はありません（{', '.join(sorted(known_kinds()))}）",
            f"--rate-limit {text!r}: no kind {kind!r} ({', '.join(sorted(known_kinds()))})",
        )
    if rule == "off":
        return kind, None
    calls, _, per = rule.partition("/")
    try:
        limit = RateLimit(int(calls), parse_duration(per))
    except ValueError:
        limit = RateLimit(0, 0.0)
    if limit.calls < 1 or not limit.per_s > 0 or not math.isfinite(limit.per_s):
        raise ScenarioMistake(
            f"--rate-limit {text!r} を読めません（例: lineworks=3/60s、slack=off）",
            f"cannot read --rate-limit {text!r} (write e.g. lineworks=3/60s or slack=off)",
        )
    return kind, limit


def parse_interval(text: str) -> tuple[str, float]:
    """A ``--check-interval-for`` value: ``KEY=DURATION``, KEY a kind or a target key.

    >>> parse_interval("131211/chat=5m"), parse_interval("lineworks=120")
    (('131211/chat', 300.0), ('lineworks', 120.0))
    """
    key, _, value = text.partition("=")
    try:
        seconds = parse_duration(value.strip())
    except ValueError:
        seconds = math.nan
    if not key.strip() or not seconds >= 0 or not math.isfinite(seconds):
        raise ScenarioMistake(
            f"--check-interval-for {text!r} を読めません（例: lineworks=2m、131211/chat=300s）",
            f"cannot read --check-interval-for {text!r} (write e.g. lineworks=2m or "
            "131211/chat=300s)",
        )
    return key.strip(), seconds


def limits_with(overrides: Iterable[tuple[str, RateLimit | None]]) -> dict[str, RateLimit]:
    """:data:`DEFAULT_LIMITS` with *overrides* (``None``: that kind has no limit).

    >>> sorted(limits_with([("slack", None), ("mattermost", RateLimit(5, 60.0))]))
    ['lineworks', 'mattermost', 'teams', 'twilio']
    """
    limits = dict(DEFAULT_LIMITS)
    for kind, limit in overrides:
        if limit is None:
            limits.pop(kind, None)
        else:
            limits[kind] = limit
    return limits


class RateWindow:
    """A sliding window of check starts: how long until the next may start.

    >>> w = RateWindow(RateLimit(2, 60.0))
    >>> w.take(0.0); w.take(10.0); w.wait_s(15.0)
    45.0
    >>> w.wait_s(60.0)
    0.0

    """

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._starts: deque[float] = deque()

    def wait_s(self, now: float) -> float:
        while self._starts and now - self._starts[0] >= self.limit.per_s:
            self._starts.popleft()
        if len(self._starts) < self.limit.calls:
            return 0.0
        return max(0.0, self._starts[-self.limit.calls] + self.limit.per_s - now)

    def take(self, now: float) -> None:
        self._starts.append(now)


@dataclass(frozen=True, slots=True)
class Checked:
    """A report as served: from a fresh check, or the cache (with its age)."""

    report: PreflightReport
    age_s: float
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {**self.report.to_dict(), "cached": self.cached, "age_s": round(self.age_s, 3)}


def _single(key: str, kind: str, name: str, reason: Reason, code: str) -> PreflightReport:
    failed = PhaseResult(name, "connect", False, 0.0, reason, code=code)
    return PreflightReport(key, kind, (failed,), checked_at=time.time())


def _skipped(key: str, kind: str, reason: Reason) -> PreflightReport:
    return PreflightReport(key, kind, (), checked_at=time.time(), skipped=reason)


MakeProbe = Callable[[Target], Awaitable[Probe]]


@functools.cache
def _preflights(cls: type) -> bool:
    """Does a probe class implement :class:`Preflights`? (Asked once per class: a
    runtime protocol check walks the protocol's attributes every time.)"""
    return callable(getattr(cls, "preflight", None))


class PreflightRunner:
    """Checks targets concurrently; caches, rate-limits and times each one out."""

    def __init__(
        self,
        *,
        make_probe: MakeProbe | None = None,
        min_interval_s: float = 60.0,
        intervals: Mapping[str, float] | None = None,
        timeout_s: float = 10.0,
        limits: Mapping[str, RateLimit] | None = None,
        concurrency: int = 32,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._make = make_probe
        self.min_interval_s = min_interval_s
        self.intervals = dict(intervals or {})
        self.timeout_s = timeout_s
        self.limits = dict(DEFAULT_LIMITS if limits is None else limits)
        self._clock = clock
        self._cache: dict[str, tuple[PreflightReport, float]] = {}
        self._flights: dict[str, asyncio.Future[tuple[PreflightReport, float]]] = {}
        self._windows: dict[str, RateWindow] = {}
        self._turns: dict[str, asyncio.Lock] = {}
        self._limit = asyncio.Semaphore(concurrency)
        self._own: tuple[Any, ProbeEnv] | None = None  # simulator pool and env, if we made them

    def interval_of(self, target: Target) -> float:
        """The minimum interval between two checks of *target* (by key, then kind)."""
        return self.intervals.get(
            target.key, self.intervals.get(target.channel.kind, self.min_interval_s)
        )

    async def check_all(
        self, targets: Iterable[Target], *, timeout_s: float | None = None
    ) -> list[Checked]:
        async def one(target: Target) -> Checked:
            async with self._limit:
                return await self.check(target, timeout_s=timeout_s)

        return list(await asyncio.gather(*(one(t) for t in targets)))

    async def check(
        self, target: Target, *, timeout_s: float | None = None, module: str = "full"
    ) -> Checked:
        """*target*'s report: cached if younger than its interval, else checked now.

        ``module="tls"``: only the endpoints up to their TLS (:mod:`drills.core.preflight_tls`),
        cached apart from the full check and not rate-limited (no provider API is called).
        """
        key = target.key if module == "full" else f"{target.key}?module={module}"
        hit = self._cache.get(key)
        now = self._clock()
        if hit is not None and now - hit[1] < self.interval_of(target):
            return Checked(hit[0], now - hit[1], cached=True)
        flight = self._flights.get(key)
        if flight is None:
            limit = self.timeout_s if timeout_s is None else timeout_s
            flight = asyncio.ensure_future(self._fresh(target, limit, module, key))
            self._flights[key] = flight
            flight.add_done_callback(functools.partial(self._landed, key))
        report, at = await asyncio.shield(flight)
        age = self._clock() - at
        return Checked(report, age, cached=age > 0 and at < now)

    def _landed(self, key: str, _flight: asyncio.Future[Any]) -> None:
        self._flights.pop(key, None)

    async def _fresh(
        self, target: Target, timeout_s: float, module: str, key: str
    ) -> tuple[PreflightReport, float]:
        kind = target.channel.kind
        limit = self.limits.get(kind) if module == "full" else None
        if limit is not None:
            turn = await self._turn(target, limit, timeout_s)
            if isinstance(turn, tuple):
                return turn
            timeout_s = turn
        report = await self._run(target, timeout_s, module)
        at = self._clock()
        self._cache[key] = (report, at)
        return report, at

    async def _turn(
        self, target: Target, limit: RateLimit, timeout_s: float
    ) -> float | tuple[PreflightReport, float]:
        """Wait for the provider's turn: the time left, or the answer to give instead.

        One asker of a provider at a time: each counts from the previous one's
        actual start, so the starts are never closer than the limit allows.
        """
        kind = target.channel.kind
        window = self._windows.setdefault(kind, RateWindow(limit))
        asked = self._clock()
        async with self._turns.setdefault(kind, asyncio.Lock()):
            now = self._clock()
            left = timeout_s - (now - asked)
            wait = window.wait_s(now)
            if wait > 0:
                stale = self._cache.get(target.key)
                if stale is not None:
                    return stale
                if wait >= left:
                    why = Reason(
                        f"{kind} の確認は {limit.per_s:g} 秒に {limit.calls} 回までです"
                        f"（あと {wait:.0f} 秒）",
                        f"{kind} is checked at most {limit.calls} times per {limit.per_s:g} s "
                        f"(next in {wait:.0f} s)",
                    )
                    return _skipped(target.key, kind, why), self._clock()
                await asyncio.sleep(wait)
            start = self._clock()
            window.take(start)
        return timeout_s - (start - asked)

    async def _run(self, target: Target, timeout_s: float, module: str = "full") -> PreflightReport:
        key, kind = target.key, target.channel.kind
        try:
            probe = await self._probe(target)
        except Exception as exc:  # a simulator that cannot start, settings that do not build
            why = Reason(f"確認を始められません: {exc}", f"cannot start the check: {exc}")
            return _single(key, kind, f"{kind}.check", why, "error")
        if module == "tls":
            from drills.core.preflight_tls import tls_check

            check = tls_check(probe)
        elif not _preflights(type(probe)):
            why = Reason(
                f"種類 {kind} には事前確認がありません", f"kind {kind} has no preflight check"
            )
            return _skipped(key, kind, why)
        else:
            check = cast(Preflights, probe).preflight()
        # This runs in the check's own task (check() made it): the sink set here is seen by
        # the PhaseTimers of this check only.
        sink: list[PhaseTimer] = []
        token = timer_sink.set(sink)
        try:
            async with asyncio.timeout(timeout_s):
                report = await check
        except TimeoutError:
            if sink:
                return sink[-1].timed_out(timeout_s).keyed(key)
            why = Reason(
                f"{timeout_s:g} 秒以内に終わりませんでした",
                f"did not finish within {timeout_s:g} s",
            )
            return _single(key, kind, f"{kind}.check", why, "timeout")
        except Exception as exc:  # a harness fault in the probe: said, never a traceback
            why = Reason(
                f"確認が異常終了しました: {type(exc).__name__}: {exc}",
                f"the check broke: {type(exc).__name__}: {exc}",
            )
            return _single(key, kind, f"{kind}.check", why, "error")
        finally:
            timer_sink.reset(token)
        return report.keyed(key)

    async def _probe(self, target: Target) -> Probe:
        if self._make is not None:
            return await self._make(target)
        channel = target.channel
        cls = channel.probe_class()
        if self._own is None:
            from drills.core.simulators import SimulatorPool

            self._own = (SimulatorPool(), ProbeEnv())
        pool, env = self._own
        if channel.simulated:
            settings = cls.Settings.model_validate(await pool.settings_for(target))
        else:
            settings = channel.settings
        return cls(target.key, settings, env)

    async def aclose(self) -> None:
        """Stop the simulators and HTTP session this runner made (not those it was lent)."""
        own, self._own = self._own, None
        if own is not None:
            pool, env = own
            await env.aclose()
            await pool.stop()


class PreflightFailed(DrillSafetyError, ScenarioMistake):
    """``drill.preflight()`` found channels that cannot work: the drill stops before sending.

    Refused for drill safety and reported like a mistake in how the drill is run
    (exit 2, naming the scenario line): nothing was sent, the registry's
    credentials or the servers need fixing first. ``str()`` is ``"日本語 / English"``
    naming each channel and its failed phase.
    """

    def __init__(self, failing: Sequence[PreflightReport], where: str | None = None) -> None:
        ja, en = stop_message(failing)
        ScenarioMistake.__init__(self, ja, en, where)
        self.reports = tuple(failing)


def stop_message(failing: Sequence[PreflightReport]) -> tuple[str, str]:
    """Why a drill stops: each failing channel with its phase and reason.

    >>> bad = PhaseResult("imap.auth", "auth", False, 0.1, Reason("ログイン失敗", "login refused"))
    >>> ja, en = stop_message([PreflightReport("131211/mail", "mail", (bad,))])
    >>> en
    'preflight: 1 channel(s) cannot work, the drill stops before sending: 131211/mail (mail) at imap.auth [auth]: login refused'
    """
    ja_lines, en_lines = [], []
    for report in failing:
        failed = report.failure
        assert failed is not None
        why = failed.reason or Reason("失敗", "failed")
        where = f"{report.target} ({report.kind}) at {failed.name} [{failed.phase}]"
        ja_lines.append(
            f"{report.target}（{report.kind}）の {failed.name}［{failed.phase}］: {why.ja}"
        )
        en_lines.append(f"{where}: {why.en}")
    n = len(failing)
    ja = f"事前確認: {n} 件のチャネルが使えないため、送信せずに訓練を止めました: " + "; ".join(
        ja_lines
    )
    en = f"preflight: {n} channel(s) cannot work, the drill stops before sending: " + "; ".join(
        en_lines
    )
    return ja, en
