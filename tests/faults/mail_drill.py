"""One mail drill through the real runner, for the mail and network rows of the fault matrix.

A case builds a registry with one *live* ``mail`` channel pointed at a real (or
faulty) server, and :func:`drill_mail` runs it as an operator would — the
operator API (:func:`drills.operator.scenario.open_drill`, ``live=True``) over a
file journal — then judges ``expect(reached="100%")`` and reads everything back:
the records from the journal file, the run's status, what was logged.
:func:`assert_sound` is the part every case shares: (b) no traceback in any log
line, reason or journal row, (c) the journal intact with exactly one run whose
status matches the verdict.

The servers the pytest fixtures started (tests/faults/conftest.py) reach the
cases through :func:`servers`: a case names the fixture in ``FaultCase.fixtures``,
the fixture puts the servers here for the length of the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drills.core.delivery import Delivery
from drills.core.journal import Journal, RunStatus
from drills.core.registry import parse_registry
from drills.core.requirements import HarnessFault, RequirementMissed
from drills.operator.results import Broadcast
from drills.operator.scenario import open_drill
from tests.faults.checks import assert_classified, assert_no_traceback, journal_intact, run_status

__all__ = [
    "DrillRecord",
    "MailServers",
    "assert_sound",
    "drill_mail",
    "mail_channel",
    "secret",
    "servers",
    "using",
]

CODE = "131211"  # 足立区 (valid check digit)
TO = "drill@example.lg.jp"
DRILL_LIMIT_S = 30.0  # no case's drill takes more than a few seconds


@dataclass
class MailServers:
    """What the fixtures started: any of them may be None for a case that needs none."""

    front: Any = None  # tests.servers.lmtp_front.LmtpFront (faults cleared)
    dovecot: Any = None  # tests.servers.dovecot.Dovecot
    ca: Any = None  # tests.mail.conftest.MailCA
    extra: dict[str, Any] = field(default_factory=dict)


_current: list[MailServers] = []


@contextlib.contextmanager
def using(found: MailServers) -> Iterator[MailServers]:
    _current.append(found)
    try:
        yield found
    finally:
        _current.remove(found)


def servers() -> MailServers:
    assert _current, "this case needs the mail_servers fixture (FaultCase.fixtures)"
    return _current[-1]


def secret(folder: Path, name: str, value: str) -> str:
    """A ``file:`` secret reference, as a municipality's registry would give it."""
    path = folder / f"{name}.secret"
    path.write_text(value + "\n", encoding="utf-8")
    path.chmod(0o600)
    return f"file:{path}"


def mail_channel(
    folder: Path,
    *,
    smtp: dict[str, Any],
    imap: dict[str, Any] | None = None,
    to: str = TO,
    **over: Any,
) -> dict[str, Any]:
    """A live ``mail`` channel: SMTP ``sender``/``sendpass`` on loopback, no retries, 2 s timeout."""
    channel: dict[str, Any] = {
        "id": "mail",
        "kind": "mail",
        "smtp": {
            "host": "127.0.0.1",
            "security": "plain",
            "user": "sender",
            "password": secret(folder, "smtp", "sendpass"),
            "timeout": "2s",
            "retries": 0,
            **smtp,
        },
        "from": "drill-sender@example.lg.jp",
        "to": to,
        **over,
    }
    if imap is not None:
        channel["imap"] = {"host": "127.0.0.1", "security": "plain", "timeout": "2s", **imap}
    return channel


def imap_of(
    folder: Path, port: int, user: str = "drill", password: str = "drillpass"
) -> dict[str, Any]:
    return {"port": port, "user": user, "password": secret(folder, f"imap-{user}", password)}


@dataclass
class DrillRecord:
    """What the drill left behind, read back as a user would."""

    path: Path
    run_id: str
    deliveries: list[Delivery]
    status: str  # the run's status in the journal
    verdict: BaseException | None  # RequirementMissed, HarnessFault or None (met)
    logs: str  # every log record of the harness while it ran, formatted with tracebacks
    wall_s: float

    @property
    def only(self) -> Delivery:
        assert len(self.deliveries) == 1, [d.outcome.value for d in self.deliveries]
        return self.deliveries[0]


class _Capture(logging.Handler):
    """Every log record (any level) the harness writes, with its traceback if it has one.

    The test servers' own loggers (aiosmtpd's ``mail.log``) are the far end, not the
    harness: a server-side TLS error there is the fault itself.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("mail.log"):
            self.lines.append(self.format(record))


@contextlib.contextmanager
def _captured() -> Iterator[_Capture]:
    root = logging.getLogger()
    handler, level = _Capture(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def drill_mail(
    folder: Path,
    channels: list[dict[str, Any]] | dict[str, Any],
    *,
    timeout: float,
    slo: str = "5s",
    repeat: int = 1,
    interval: float = 0.0,
    during: Callable[[], None] | None = None,
    reached: str = "100%",
) -> DrillRecord:
    """Broadcast once over *channels* through the real runner; judge ``expect(reached=…)``.

    ``during`` runs on the calling thread while the step is in flight (the fault
    injected mid-drill); the step itself runs on the drill's background loop.
    """
    chans = [channels] if isinstance(channels, dict) else channels
    registry_text = json.dumps(
        {
            "municipalities": [
                {"code": CODE, "name": "足立区", "slo": {"latency": slo}, "channels": chans}
            ]
        },
        ensure_ascii=False,
    )
    registry = parse_registry(registry_text, str(folder / "registry.yaml"))
    path = folder / "journal.sqlite"
    verdict: BaseException | None = None
    started = time.monotonic()
    with _captured() as logs:
        with open_drill(registry, str(path), scenario="faults", live=True) as drill:
            run_id = drill.ctx.run_id
            step = drill.ctx.drill.broadcast(
                "障害注入訓練", timeout=timeout, repeat=repeat, interval=interval, step="fault"
            )
            pending = asyncio.run_coroutine_threadsafe(step, drill.ctx.loop.loop)
            try:
                if during is not None:
                    during()
                result = pending.result(DRILL_LIMIT_S)
            finally:
                pending.cancel()
            try:
                Broadcast(drill, result).expect(reached=reached)
            except (RequirementMissed, HarnessFault) as exc:
                verdict = exc  # the operator API marks a run it could not judge as failed
    wall = time.monotonic() - started
    with Journal(path) as journal:
        deliveries = journal.deliveries(run_id)
    return DrillRecord(
        path, run_id, deliveries, run_status(path, run_id), verdict, "\n".join(logs.lines), wall
    )


def assert_sound(record: DrillRecord, *, count: int = 1) -> None:
    """(b) no traceback anywhere a user reads, (c) the journal intact, one run, status right."""
    assert_no_traceback(record.logs, "the harness's log")
    assert_classified(record.deliveries)  # a stage and a cause for each failure
    for d in record.deliveries:
        assert_no_traceback(d.reason, f"the reason of {d.token}")
    if record.verdict is not None:
        assert_no_traceback(str(record.verdict), "the verdict")
    runs = journal_intact(record.path)
    assert [r["run_id"] for r in runs] == [record.run_id], runs
    assert len(record.deliveries) == count, [d.outcome.value for d in record.deliveries]
    expected = RunStatus.FAILED if isinstance(record.verdict, HarnessFault) else RunStatus.FINISHED
    assert record.status == expected, (record.status, record.verdict)
