"""The preflight contract: can a channel work, checked without sending anything.

Between drills a channel is *checked*, not drilled: the server answers, TLS is
valid and not expiring, the sender's credential logs in and the observer can
still read. A probe that can do this implements :class:`Preflights`::

    report = await probe.preflight()        # sends nothing, leaves nothing visible
    report.ok, report.failure, report.certificates

Each check is a sequence of *phases* (``smtp.connect``, ``imap.auth``,
``observer.read`` …), each of one class — ``dns``, ``connect``, ``tls``,
``auth``, ``read`` or ``account`` — and timed the same way for every kind with
:class:`PhaseTimer`; the first failing phase ends the check and its bilingual
reason is the report's::

    async with PhaseTimer("mail", "mail") as timer:
        async with timer.phase("smtp.connect", "connect"):
            await connect()                 # a ProbeError here fails the phase
        timer.certificate("smtp", "relay.example.lg.jp", 587, not_after)
    return timer.report()

**A channel whose deliveries cannot be confirmed** — no observer configured (mail
without ``imap``/``maildir``, a chat kind or webhook without ``observer``, Twilio
without a number it can read) — is the same for every kind: everything that can
be checked is checked, the check passes if that works, and the report says so
with the fact ``observer_configured`` 0 (:data:`NO_OBSERVER` in the ``check``
table and the ``/probe`` answer): its drills would only say "accepted", never
"delivered". A channel with nothing at all to check without sending (a webhook
with neither ``health_url`` nor ``observer``) is reported *skipped*, not failing.

**A refused credential** — HTTP 401, or a kind's own "token not valid" answer — is
class ``auth`` in whichever phase it is met (a read answered 401 is an ``auth``
failure); a 403 (logged in, not allowed) keeps its phase's class.

Nothing here does I/O: this module is types, the timer and the JSON shape that
``tsunagari check``, ``/probe`` and the metrics all read.
"""

from __future__ import annotations

import contextvars
import functools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Literal, Protocol, get_args, runtime_checkable

from probes.base import ChannelUnreachable, ProbeError, Reason

__all__ = [
    "NO_OBSERVER",
    "PHASE_CLASSES",
    "CertificateFact",
    "PhaseClass",
    "PhaseFailure",
    "PhaseResult",
    "PhaseTimer",
    "PreflightReport",
    "Preflights",
    "Reason",
    "StageClock",
    "not_after_of",
    "timer_sink",
]

PhaseClass = Literal["dns", "connect", "tls", "auth", "read", "account"]

NO_OBSERVER = Reason(
    "観測側がありません: 届いたかを確認できず、訓練は「受付のみ」になります",
    "no observer: arrival cannot be confirmed, drills can only say 'accepted'",
)
PHASE_CLASSES: tuple[str, ...] = get_args(PhaseClass)
_DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class PhaseResult:
    """One timed phase of a check: ``name`` like ``smtp.auth``, ``phase`` its class."""

    name: str
    phase: PhaseClass
    ok: bool
    seconds: float
    reason: Reason | None = None
    detail: str = ""  # what was learnt (a banner, a user) — never a secret
    code: str | None = None  # the ProbeError's code, e.g. "tls", "auth"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "phase": self.phase,
            "ok": self.ok,
            "seconds": round(self.seconds, 6),
            "reason": None if self.reason is None else {"ja": self.reason.ja, "en": self.reason.en},
            "detail": self.detail,
            "code": self.code,
        }


@dataclass(frozen=True, slots=True)
class CertificateFact:
    """A peer certificate seen by a check: which endpoint and when it expires.

    >>> c = CertificateFact("imap", "mail.example.lg.jp", 993, not_after=86_400.0 * 10)
    >>> c.days_left(now=86_400.0 * 7.5)
    2.5
    """

    endpoint: str  # smtp, imap, https, observer …
    host: str
    port: int
    not_after: float  # epoch seconds (UTC)

    def days_left(self, now: float | None = None) -> float:
        return (self.not_after - (time.time() if now is None else now)) / _DAY

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "host": self.host,
            "port": self.port,
            "not_after": self.not_after,
        }


@dataclass(frozen=True, slots=True)
class PreflightReport:
    """The outcome of one target's check.

    ``facts`` holds numbers other than time (``twilio_balance``, ``cost_cap``);
    ``skipped`` says why a target was not checked at all (then it is not failing).

    >>> ok = PhaseResult("smtp.connect", "connect", True, 0.01)
    >>> bad = PhaseResult("smtp.auth", "auth", False, 0.02, Reason("認証失敗", "auth failed"))
    >>> report = PreflightReport("131211/mail", "mail", (ok, bad), checked_at=0.0, elapsed_s=0.03)
    >>> report.ok, report.failure.name, str(report.reason)
    (False, 'smtp.auth', 'smtp.auth: 認証失敗 / smtp.auth: auth failed')
    """

    target: str
    kind: str
    phases: tuple[PhaseResult, ...]
    certificates: tuple[CertificateFact, ...] = ()
    facts: Mapping[str, float] = field(default_factory=dict)
    checked_at: float = 0.0  # wall clock, epoch seconds
    elapsed_s: float = 0.0
    skipped: Reason | None = None

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.phases)

    @property
    def failure(self) -> PhaseResult | None:
        """The first failing phase (the check stops there)."""
        return next((p for p in self.phases if not p.ok), None)

    @property
    def reason(self) -> Reason | None:
        """The first failure's reason, naming its phase (None when all is well)."""
        failed = self.failure
        if failed is None:
            return None
        why = failed.reason or Reason("失敗", "failed")
        return Reason(f"{failed.name}: {why.ja}", f"{failed.name}: {why.en}")

    def phase(self, name: str) -> PhaseResult | None:
        return next((p for p in self.phases if p.name == name), None)

    def keyed(self, target: str) -> PreflightReport:
        """The same report under the registry's key (``131211/mail``)."""
        return self if target == self.target else replace(self, target=target)

    def min_cert_days(self, now: float | None = None) -> float | None:
        if not self.certificates:
            return None
        return min(c.days_left(now) for c in self.certificates)

    def to_dict(self) -> dict[str, Any]:
        reason = self.reason
        return {
            "target": self.target,
            "kind": self.kind,
            "ok": self.ok,
            "skipped": None
            if self.skipped is None
            else {"ja": self.skipped.ja, "en": self.skipped.en},
            "reason": None if reason is None else {"ja": reason.ja, "en": reason.en},
            "checked_at": self.checked_at,
            "elapsed_s": round(self.elapsed_s, 6),
            "phases": [p.to_dict() for p in self.phases],
            "certificates": [c.to_dict() for c in self.certificates],
            "facts": dict(self.facts),
        }


@runtime_checkable
class Preflights(Protocol):
    """A probe that can check its channel without sending (``tsunagari check``, ``/probe``).

    >>> isinstance(object(), Preflights)
    False
    """

    async def preflight(self) -> PreflightReport:
        """Every phase of the check, timed; sends nothing, leaves nothing visible."""
        ...


# --------------------------------------------------------------------------- timing


class PhaseFailure(ProbeError):
    """A failure whose phase class is not the running phase's own.

    E.g. an HTTP 401 met while reading: the phase ``observer.read`` fails as
    ``auth`` (the credential), not ``read``. Raise it inside :meth:`PhaseTimer.phase`.
    """

    def __init__(self, reason: str, *, phase: PhaseClass, code: str | None = None) -> None:
        super().__init__(reason, code=code)
        self.phase: PhaseClass = phase


class _Stop(Exception):
    """A phase failed: the rest of the check is skipped (caught by PhaseTimer)."""


# A runner that applies a timeout sets a list here before starting the check's task;
# every PhaseTimer started in that task appends itself, so the runner can report the
# phases done so far and the one that ran out of time (see PhaseTimer.timed_out).
timer_sink: contextvars.ContextVar[list[PhaseTimer] | None] = contextvars.ContextVar(
    "tsunagari_preflight_timer_sink", default=None
)


class PhaseTimer:
    """Times the phases of one check and turns a ProbeError into a failed phase.

    ``async with timer:`` swallows the stop after the first failed phase;
    ``TimeoutError`` and ``OSError`` in a phase fail it too (a check must name
    where it broke); anything else is a harness fault and propagates.
    """

    def __init__(
        self, target: str, kind: str, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.target = target
        self.kind = kind
        self._clock = clock
        self._started = clock()
        self._checked_at = time.time()
        self.phases: list[PhaseResult] = []
        self.certificates: list[CertificateFact] = []
        self.facts: dict[str, float] = {}
        self._current: tuple[str, PhaseClass, float] | None = None
        sink = timer_sink.get()
        if sink is not None:
            sink.append(self)

    def __enter__(self) -> PhaseTimer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        return kind is _Stop

    async def __aenter__(self) -> PhaseTimer:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        return kind is _Stop

    @property
    def failed(self) -> bool:
        return any(not p.ok for p in self.phases)

    def phase(self, name: str, phase: PhaseClass) -> _Phase:
        """Time one phase (``with timer.phase(...) as note``, or ``async with``); the
        yielded dict takes a ``detail`` for the result."""
        return _Phase(self, name, phase)

    def fail(self, name: str, phase: PhaseClass, reason: Reason, code: str | None = None) -> None:
        """Record a failed phase found by inspection (no exception), and stop the check."""
        self._fail(name, phase, self._clock(), reason, code)
        raise _Stop

    def _fail(
        self, name: str, phase: PhaseClass, start: float, reason: Reason, code: str | None
    ) -> None:
        self._current = None
        self.phases.append(
            PhaseResult(name, phase, False, self._clock() - start, reason, code=code)
        )

    def stages(self, prefix: str, classes: Mapping[str, PhaseClass]) -> StageClock:
        """Time a call that announces its stages through a callback (``on_stage``).

        For library calls that run several stages in one go (SMTP open, IMAP
        login): each announced stage is a phase ``{prefix}.{stage}`` of class
        ``classes[stage]`` that lasts until the next announcement; a ProbeError
        fails the stage in progress, like :meth:`phase`::

            async with timer.stages("smtp", {"connect": "connect", "auth": "auth"}) as stages:
                await session.open(on_stage=stages.enter)
        """
        return StageClock(self, prefix, classes)

    def record(self, result: PhaseResult) -> None:
        self.phases.append(result)

    def certificate(self, endpoint: str, host: str, port: int, not_after: float | None) -> None:
        if not_after is not None:
            self.certificates.append(CertificateFact(endpoint, host, port, not_after))

    def fact(self, name: str, value: float) -> None:
        self.facts[name] = value

    def report(self) -> PreflightReport:
        return PreflightReport(
            target=self.target,
            kind=self.kind,
            phases=tuple(self.phases),
            certificates=tuple(self.certificates),
            facts=dict(self.facts),
            checked_at=self._checked_at,
            elapsed_s=self._clock() - self._started,
        )

    def timed_out(self, limit_s: float) -> PreflightReport:
        """The report of a check cut off after *limit_s*: the running phase failed."""
        name, phase, start = self._current or (f"{self.kind}.check", "connect", self._started)
        why = Reason(
            f"{limit_s:g} 秒以内に終わりませんでした", f"did not finish within {limit_s:g} s"
        )
        self.phases.append(
            PhaseResult(name, phase, False, self._clock() - start, why, code="timeout")
        )
        self._current = None
        return self.report()


class _Phase:
    """One phase of a :class:`PhaseTimer` as a ``with`` or ``async with`` block (see
    :meth:`PhaseTimer.phase`): a ProbeError, TimeoutError or OSError inside fails
    the phase and stops the check; anything else propagates. A plain object
    rather than a generator-based context manager, and nothing in it awaits: a
    check runs four to eight of these, and ``/probe`` runs a check per scrape."""

    __slots__ = ("_name", "_phase", "_start", "_timer", "note")

    def __init__(self, timer: PhaseTimer, name: str, phase: PhaseClass) -> None:
        self._timer = timer
        self._name = name
        self._phase: PhaseClass = phase
        self._start = 0.0
        self.note: dict[str, str] = {}

    def __enter__(self) -> dict[str, str]:
        timer = self._timer
        self._start = start = timer._clock()
        timer._current = (self._name, self._phase, start)
        return self.note

    async def __aenter__(self) -> dict[str, str]:
        return self.__enter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(kind, exc, tb)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:  # never swallows: a failed phase raises _Stop for the PhaseTimer to catch
        timer, name, phase, start = self._timer, self._name, self._phase, self._start
        if exc is None:
            timer._current = None
            timer.phases.append(
                PhaseResult(
                    name, phase, True, timer._clock() - start, detail=self.note.get("detail", "")
                )
            )
            return
        if isinstance(exc, ProbeError):
            cls = _class_of(exc, phase)
            timer._fail(name, cls, start, Reason.parse(exc.reason), exc.code)
            raise _Stop from exc
        if isinstance(exc, TimeoutError):
            why = Reason("応答がありません（タイムアウト）", "no answer (timed out)")
            timer._fail(name, phase, start, why, "timeout")
            raise _Stop from None
        if isinstance(exc, OSError):
            why, code = _os_reason(exc)
            # A socket error is the network's, whatever the phase meant to check.
            net = phase if phase in ("dns", "connect", "tls") else "connect"
            timer._fail(name, "tls" if code == "tls" else net, start, why, code)
            raise _Stop from exc
        # cancelled, or a harness fault: propagates; _current stays, so a runner's
        # timeout can name this phase


def _os_reason(exc: OSError) -> tuple[Reason, str]:
    """A socket or TLS error met in a phase (not mapped by the probe itself)."""
    import ssl  # already loaded by asyncio; here to keep this module's imports pure

    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return Reason(f"TLS で接続できません: {exc}", f"TLS failed: {exc}"), "tls"
    return Reason(f"接続できません: {exc}", f"cannot connect: {exc}"), "connect"


def _class_of(exc: ProbeError, phase: PhaseClass) -> PhaseClass:
    """A PhaseFailure's own class; a TLS failure (code ``tls``) is a ``tls`` phase's; a
    server that could not be reached is a ``connect`` failure whatever the phase meant to
    check (an ``account.auth`` that never got an answer says nothing of the credentials).

    >>> from probes.base import ChannelRejected, ChannelUnreachable
    >>> _class_of(ChannelUnreachable("down"), "auth"), _class_of(ChannelRejected("401"), "auth")
    ('connect', 'auth')
    """
    if isinstance(exc, PhaseFailure):
        return exc.phase
    if exc.code == "tls":
        return "tls"
    return "connect" if isinstance(exc, ChannelUnreachable) else phase


class StageClock:
    """Phases from stage announcements (see :meth:`PhaseTimer.stages`)."""

    def __init__(self, timer: PhaseTimer, prefix: str, classes: Mapping[str, PhaseClass]) -> None:
        self._timer = timer
        self._prefix = prefix
        self._classes = classes
        self._stage: str | None = None
        self._start = 0.0
        self.details: dict[str, str] = {}  # stage → what it learnt (set before the block ends)

    def enter(self, stage: str) -> None:
        """The callback: *stage* begins now (and the previous one ended well)."""
        now = self._timer._clock()
        self._close(now)
        self._stage, self._start = stage, now
        self._timer._current = (self._name(stage), self._classes.get(stage, "connect"), now)

    def _name(self, stage: str) -> str:
        return f"{self._prefix}.{stage}"

    def _close(self, now: float) -> None:
        if self._stage is not None:
            stage, self._stage = self._stage, None
            cls = self._classes.get(stage, "connect")
            self._timer.record(PhaseResult(self._name(stage), cls, True, now - self._start))

    async def __aenter__(self) -> StageClock:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        now = self._timer._clock()
        if exc is None:
            self._close(now)
            self._timer._current = None
            self._apply_details()
            return
        if self._stage is None or isinstance(exc, _Stop):
            return
        stage = self._stage
        if isinstance(exc, ProbeError):
            why, code = Reason.parse(exc.reason), exc.code
        elif isinstance(exc, TimeoutError):
            why, code = (
                Reason("応答がありません（タイムアウト）", "no answer (timed out)"),
                "timeout",
            )
        elif isinstance(exc, OSError):
            why, code = _os_reason(exc)
        else:
            return  # cancelled, or a harness fault: propagate untouched (_current stays)
        self._stage = None
        cls = self._classes.get(stage, "connect")
        cls = _class_of(exc, cls) if isinstance(exc, ProbeError) else cls
        cls = "tls" if code == "tls" else cls
        self._apply_details()
        self._timer._fail(self._name(stage), cls, self._start, why, code)
        raise _Stop from exc

    def _apply_details(self) -> None:
        if not self.details:
            return
        phases, prefix = self._timer.phases, self._prefix + "."
        for i, p in enumerate(phases):
            if p.detail or not p.name.startswith(prefix):
                continue
            detail = self.details.get(p.name[len(prefix) :])
            if detail:
                phases[i] = PhaseResult(p.name, p.phase, p.ok, p.seconds, p.reason, detail, p.code)


def not_after_of(der: bytes | None) -> float | None:
    """A DER certificate's notAfter as epoch seconds (None without a certificate).

    The date is a function of the certificate's bytes alone, and a server shows
    the same certificate check after check: each one is parsed once (the check
    still fetches and verifies the certificate every time).
    """
    if not der:
        return None
    return _not_after(der)


@functools.lru_cache(maxsize=1024)
def _not_after(der: bytes) -> float | None:
    from cryptography import x509  # imported on use: only TLS checks need it

    cert = x509.load_der_x509_certificate(der)
    value = cert.not_valid_after_utc.timestamp()
    return value if math.isfinite(value) else None
