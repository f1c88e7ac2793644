"""Locust user classes of the surge — imported ONLY inside a Locust process.

Importing ``locust`` monkey-patches the process with gevent, which breaks
asyncio (FIELD-NOTES.md, "Load: Locust"): the harness never imports this
module; it runs ``python -m locust -f drills/surge/locustfiles.py …``
(:mod:`drills.surge.process`). Configuration comes from the JSON file named
by ``TSUNAGARI_SURGE_CONFIG`` (:mod:`drills.surge.config`).

One user class per load kind, all gevent-friendly:

- :class:`WebhookSurge` — chat webhooks over HTTP, through ``FastHttpUser``;
- :class:`SmtpSurge` — mail through ``smtplib`` (cooperative under gevent),
  one kept-alive session per user, firing Locust ``request`` events;
- :class:`TwilioSurge` — the Twilio Messages API, through ``FastHttpUser``.

Every message is a marked drill message (``DrillMessage``: marker + token).
The *master* (or the only process) keeps the ramp clock: at each step it tells
every process the per-user rate (a custom message to workers) and appends the
step to the progress file. Requests are named after their step, so Locust's
own aggregation gives per-step statistics. At the end, or on SIGTERM, load is
idled, every worker reports its final stats and its own tally, then Locust quits.
"""

from __future__ import annotations

import base64
import itertools
import os
import random
import secrets
import smtplib
import ssl
import time
from collections import Counter
from typing import Any
from urllib.parse import urlencode

import gevent
from gevent.event import Event
from locust import FastHttpUser, User, constant, events, task
from locust.runners import MasterRunner, WorkerRunner

from drills.surge.config import ENV_VAR, SurgeConfig, append_progress
from drills.surge.plan import SurgePlan
from probes.base import _TOKEN_ALPHABET, DrillMessage
from probes.mail.message import build_mail

_STEP_MSG, _FLUSH_MSG, _TALLY_MSG = "tsunagari_step", "tsunagari_flush", "tsunagari_tally"
_DRAIN_S = 5.0  # how long in-flight requests and worker tallies may take at the end


class _Step:
    """The pace every user of this process follows right now."""

    __slots__ = ("changed", "index", "name", "per_user")

    def __init__(self, index: int, per_user: float) -> None:
        self.index = index
        self.per_user = per_user
        self.name = f"step {index}"
        self.changed = Event()  # set when the next step replaces this one


class _State:
    def __init__(self) -> None:
        self.step = _Step(-1, 0.0)
        self.requests: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.inflight = 0
        self.clock: Any = None
        self.finished = False
        self.tallies: dict[str, dict[str, Any]] = {}
        self._config: SurgeConfig | None = None

    @property
    def config(self) -> SurgeConfig:
        if self._config is None:
            self._config = SurgeConfig.read(os.environ[ENV_VAR])
        return self._config

    def switch(self, index: int, per_user: float) -> None:
        old, self.step = self.step, _Step(index, per_user)
        old.changed.set()

    def tally(self, worker: str) -> dict[str, Any]:
        names = sorted(set(self.requests) | set(self.failures))
        return {
            "event": "tally",
            "worker": worker,
            "requests": sum(self.requests.values()),
            "failures": sum(self.failures.values()),
            "by_step": {n: [self.requests[n], self.failures[n]] for n in names},
        }

    def drained(self) -> None:
        """Wait until no request of this process is in flight (users already idled)."""
        gevent.sleep(0)  # let users woken by the step change see it before counting
        deadline = time.monotonic() + _DRAIN_S
        while self.inflight > 0 and time.monotonic() < deadline:
            gevent.sleep(0.01)


STATE = _State()


# Load tokens: the same alphabet and 60 bits as ``probes.base.new_token``, from a
# per-process generator seeded by ``secrets`` — one syscall per process instead
# of twelve per message (new_token costs ~19 µs; this ~2.5 µs). They only need
# to be unique and well-formed: the probes, not the load, are confirmed by token.
_RNG = random.Random(secrets.randbits(128))


def _load_token() -> str:
    bits = _RNG.getrandbits(60)
    return "TSG-" + "".join(_TOKEN_ALPHABET[(bits >> shift) & 31] for shift in range(0, 60, 5))


def _message() -> DrillMessage:
    """A marked drill message (DrillMessage refuses a missing marker or a malformed token)."""
    cfg = STATE.config
    return DrillMessage(token=_load_token(), text=cfg.text, marker=cfg.marker)


def _message_text() -> str:
    return _message().render()


# --------------------------------------------------------------------------- pacing


_SLOTS = itertools.count()
_GOLDEN = 0.6180339887498949


class _Paced:
    """One message per task call, paced to the current step's per-user rate.

    Users start a step at evenly spread phases of their interval (a
    low-discrepancy sequence over the process's users), so the offered rate
    holds from the first second of a step, not just on average.
    """

    wait_time = constant(0)
    _pace: _Step | None = None
    _due = 0.0
    _phase: float | None = None

    def _turn(self) -> _Step | None:
        """Wait for this user's next slot; None when idle or when the step changed meanwhile."""
        step = STATE.step
        if step.per_user <= 0:
            step.changed.wait(1.0)
            return None
        now = time.monotonic()
        interval = 1.0 / step.per_user
        if self._pace is not step:
            if self._phase is None:
                self._phase = (next(_SLOTS) * _GOLDEN) % 1.0
            self._pace = step
            self._due = now + self._phase * interval
        delay = self._due - now
        if delay > 0 and (step.changed.wait(delay) or STATE.step is not step):
            return None  # the step changed while this user waited (even if its timer fired first)
        # No catch-up bursts: a user that fell behind restarts from now.
        self._due = max(self._due + interval, time.monotonic() - interval)
        return step


def _count(name: str, exception: BaseException | None = None, **_: Any) -> None:
    STATE.requests[name] += 1
    if exception is not None:
        STATE.failures[name] += 1


# --------------------------------------------------------------------------- users


class WebhookSurge(_Paced, FastHttpUser):
    """Posts marked drill messages to a chat webhook (JSON or form), Bearer token if any."""

    insecure = False  # verify TLS on live channels

    def on_start(self) -> None:
        ep = STATE.config.endpoint
        self._path = ep["path"]
        self._field = ep.get("field", "text")
        self._form = ep.get("format") == "form"
        self._headers = {"Authorization": f"Bearer {ep['token']}"} if ep.get("token") else {}
        if self._form:
            self._headers["Content-Type"] = "application/x-www-form-urlencoded"

    @task
    def post(self) -> None:
        step = self._turn()
        if step is None:
            return
        body = _message_text()
        STATE.inflight += 1
        try:
            if self._form:
                data = urlencode({self._field: body})
                self.client.post(self._path, data=data, headers=self._headers, name=step.name)
            else:
                self.client.post(
                    self._path, json={self._field: body}, headers=self._headers, name=step.name
                )
        finally:
            STATE.inflight -= 1


class TwilioSurge(_Paced, FastHttpUser):
    """Creates Messages through the Twilio REST API (form POST, Basic auth), round-robin ``to``."""

    insecure = False

    def on_start(self) -> None:
        ep = STATE.config.endpoint
        self._path = ep["path"]
        self._from = ep["from"]
        self._to = list(ep["to"])
        self._turns = random.randrange(len(self._to))
        basic = base64.b64encode(f"{ep['sid']}:{ep['token']}".encode()).decode("ascii")
        self._headers = {
            "Authorization": f"Basic {basic}",
            "Content-Type": "application/x-www-form-urlencoded",
        }

    @task
    def create(self) -> None:
        step = self._turn()
        if step is None:
            return
        self._turns += 1
        data = urlencode(
            {
                "To": self._to[self._turns % len(self._to)],
                "From": self._from,
                "Body": _message_text(),
            }
        )
        STATE.inflight += 1
        try:
            self.client.post(self._path, data=data, headers=self._headers, name=step.name)
        finally:
            STATE.inflight -= 1


class SmtpSurge(_Paced, User):
    """Sends marked drill mail over one kept-alive SMTP session per user (reconnects on failure)."""

    def on_start(self) -> None:
        self._ep = STATE.config.endpoint
        self._smtp: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        ep = self._ep
        context = None
        if ep.get("security", "plain") != "plain":
            context = ssl.create_default_context(cafile=ep.get("ca_file"))
            if not ep.get("verify", True):
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        timeout = float(ep.get("timeout") or 30.0)
        helo = ep.get("helo")
        smtp: smtplib.SMTP
        if ep.get("security") == "tls":
            smtp = smtplib.SMTP_SSL(
                ep["host"], ep["port"], local_hostname=helo, timeout=timeout, context=context
            )
        else:
            smtp = smtplib.SMTP(ep["host"], ep["port"], local_hostname=helo, timeout=timeout)
            if ep.get("security") == "starttls":
                smtp.starttls(context=context)
        if ep.get("user"):
            smtp.login(ep["user"], ep.get("password") or "")
        return smtp

    @task
    def send(self) -> None:
        step = self._turn()
        if step is None:
            return
        ep = self._ep
        to = list(ep["to"])
        # The same drill mail the mail probe sends: marked subject, token header, UTF-8.
        payload = build_mail(_message(), sender=ep["sender"], to=to).as_bytes()
        started = time.perf_counter()
        error: BaseException | None = None
        STATE.inflight += 1
        try:
            if self._smtp is None:
                self._smtp = self._connect()
            self._smtp.sendmail(ep["sender"], to, payload)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            error = exc
            self._drop()  # reconnect for the next message
        except smtplib.SMTPException as exc:
            error = exc  # refused (4xx/5xx): smtplib reset the session, keep it
        finally:
            STATE.inflight -= 1
        self.environment.events.request.fire(
            request_type="SMTP",
            name=step.name,
            response_time=(time.perf_counter() - started) * 1000.0,
            response_length=len(payload),
            exception=error,
            context={},
        )

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.close()
            except OSError:
                pass

    def on_stop(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self._drop()


# --------------------------------------------------------------------------- clock (master / local)


def _is_worker(environment: Any) -> bool:
    return isinstance(environment.runner, WorkerRunner)


def _set_step(environment: Any, index: int, per_user: float) -> None:
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        runner.send_message(_STEP_MSG, {"index": index, "per_user": per_user})
    else:
        STATE.switch(index, per_user)


def _run_clock(environment: Any) -> None:
    cfg = STATE.config
    plan = SurgePlan.from_dict(cfg.plan)
    append_progress(cfg.progress, {"event": "clock", "wall": time.time(), "users": plan.users})
    end = time.monotonic()
    for step in plan.steps:
        _set_step(environment, step.index, plan.per_user_rate(step))
        append_progress(
            cfg.progress,
            {"event": "step", "index": step.index, "rate": step.rate, "wall": time.time()},
        )
        end += step.duration_s
        gevent.sleep(max(0.0, end - time.monotonic()))
    _finish(environment, "completed")
    environment.runner.quit()


def _finish(environment: Any, reason: str) -> None:
    """Idle the load, collect every process's final stats and tally, record the end."""
    if STATE.finished:
        return
    STATE.finished = True
    cfg = STATE.config
    runner = environment.runner
    _set_step(environment, -1, 0.0)
    idled_at = time.time()
    if isinstance(runner, MasterRunner):
        expected = runner.worker_count
        runner.send_message(_FLUSH_MSG, {})
        deadline = time.monotonic() + _DRAIN_S
        while len(STATE.tallies) < expected and time.monotonic() < deadline:
            gevent.sleep(0.01)
        tallies = list(STATE.tallies.values())
    else:
        STATE.drained()
        tallies = [STATE.tally("local")]
    for tally in tallies:
        append_progress(cfg.progress, tally)
    append_progress(cfg.progress, {"event": "finished", "reason": reason, "wall": idled_at})


def _on_step(environment: Any, msg: Any, **_: Any) -> None:
    STATE.switch(int(msg.data["index"]), float(msg.data["per_user"]))


def _on_flush(environment: Any, msg: Any, **_: Any) -> None:
    # A worker: wait for in-flight requests, report final stats *before* the
    # tally (one connection, in order), so the master's totals include them.
    STATE.drained()
    runner = environment.runner
    runner._send_stats()  # Locust's own final-report call (as on "quit")
    runner.send_message(_TALLY_MSG, STATE.tally(str(runner.client_id)))


def _on_tally(environment: Any, msg: Any, **_: Any) -> None:
    STATE.tallies[str(msg.node_id)] = dict(msg.data)


def _on_quitting(environment: Any, **_: Any) -> None:
    # Registered in ``init``, after the runner's own quitting listener: quitting
    # fires in reverse, so this drain runs before the master tells workers to quit.
    if _is_worker(environment):
        return
    if STATE.clock is not None and not STATE.clock.dead:
        STATE.clock.kill(block=False)
    _finish(environment, "stopped")


def _on_spawned(user_count: int = 0, **_: Any) -> None:
    environment = _ENVIRONMENT.get("env")
    if environment is None or _is_worker(environment) or STATE.clock is not None:
        return
    STATE.clock = gevent.spawn(_run_clock, environment)


_ENVIRONMENT: dict[str, Any] = {}


def _on_init(environment: Any, **_: Any) -> None:
    _ENVIRONMENT["env"] = environment
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        runner.register_message(_STEP_MSG, _on_step)
        runner.register_message(_FLUSH_MSG, _on_flush, concurrent=True)
    elif isinstance(runner, MasterRunner):
        runner.register_message(_TALLY_MSG, _on_tally)
    environment.events.quitting.add_listener(_on_quitting)
    environment.events.spawning_complete.add_listener(_on_spawned)


events.request.add_listener(_count)  # type: ignore[no-untyped-call]
events.init.add_listener(_on_init)  # type: ignore[no-untyped-call]
