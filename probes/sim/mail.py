"""A simulated mail service: an SMTP relay per channel and one Maildir they deliver into.

Each simulated ``mail`` channel gets its own aiosmtpd listener on 127.0.0.1
(so an outage is a truly closed port, also mid-drill), its own AUTH login, and
a token bucket. Accepted messages are written into one shared Maildir after
the channel's injected latency (``tmp/`` then a rename into ``new/``, as a
delivery agent does); the probes watch it with the Maildir observer, which
reads the arrival time from the file's ctime. Everything runs in the drill's
event loop: no threads, no subprocesses.

Ground truth (``sim.ledger``, probes/sim/ledger.py), per token and recipient
address: *received* when the relay answers 250 after DATA, *visible* when the
file is renamed into ``new/`` of the observed Maildir (the time is taken just
before the rename: nobody can see it earlier), *dropped* on loss, *refused*
(``final=False``, ``451 4.7.1``) for each rate-limit refusal and *refused*
(``final=True``) for ``535`` on AUTH. Channels that start down are recorded
down from ``add_channel`` on. Latency and loss draw from the channel's own
random stream (``rng_for``), so two channels never share their losses.

The observed Maildir is the mailbox of the channel's ``observed`` addresses
(default: the first ``to``); mail for its other ``to`` addresses goes to
mailboxes nobody watches — in the ledger it becomes visible all the same, at
the moment it would have been stored.

Knobs (probes/sim/base.py)::

    latency     the message appears in the Maildir this long after 250
    loss        250, then never appears
    outage      the channel's port is closed (connection refused)
    rate_limit  messages/s; beyond it ``451 4.7.1`` after DATA (the probe retries)
    reject      auth → ``535 5.7.8`` after DATA (the credentials are refused)

With ``tls=True`` (or a channel whose raw settings ask for it, e.g.
``smtp: {host: sim, security: starttls}`` — the host is replaced) the relay
offers STARTTLS with a certificate from a private CA made on first use; its CA
file goes into the channel's settings. Plain channels are flagged insecure,
as a plain relay would be.

Cost (2-core machine, one process, 1,000 channels × 1 message, 300 ms latency,
through drills.core.runner): plain ≈ 2.4 s wall, 2 ms CPU per delivery, 66 MB RSS;
STARTTLS ≈ 3.9 s, 3.7 ms, 380 MB.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import shutil
import socket
import ssl
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from probes.mail.message import tokens_in_mail
from probes.mail.observer import stop_task
from probes.settings import SecretRef
from probes.sim.base import SimKnobs, Simulator, TokenBucket
from probes.sim.ledger import Entry

__all__ = ["MailSimulator"]

_SIM_DOMAIN = "sim.tsunagari.invalid"


class _LoginDataNotice(logging.Filter):
    """aiosmtpd 1.4 logs "Session.login_data is deprecated" on every successful AUTH
    (its own internals set it); drop just that line while the simulator runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


_AIOSMTPD_LOG = logging.getLogger("mail.log")
_LOGIN_DATA_NOTICE = _LoginDataNotice()


@dataclass
class _Channel:
    key: str
    knobs: SimKnobs
    user: str
    password: str
    port: int
    tls: bool
    bucket: TokenBucket | None = None
    sock: socket.socket | None = None  # bound; listening unless the channel is down
    server: asyncio.AbstractServer | None = None
    observed: frozenset[str] = frozenset()  # addresses whose mail lands in the Maildir
    accepted: int = 0
    stored: int = 0
    throttled: int = 0


@dataclass
class _Relay:
    """aiosmtpd handler for one channel."""

    sim: MailSimulator
    channel: _Channel
    ids: Any = field(default_factory=lambda: itertools.count(1))

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ch = self.channel
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == ch.user
            and secrets.compare_digest(data.password.decode(), ch.password)
        )
        return AuthResult(success=ok, handled=False)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        ch = self.channel
        sim = self.sim
        queue_id = f"S{ch.port}x{next(self.ids)}"
        data = envelope.original_content or b""
        tokens, _how = tokens_in_mail(data)
        rcpts = list(envelope.rcpt_tos)  # as the probe gave them: the ledger's recipient keys
        # Refusals are decided at the end of DATA (as a policy service at END-OF-MESSAGE
        # may), when the relay knows which drill token it refuses: the ledger names it.
        if ch.knobs.reject == "auth":
            for token in tokens:
                for rcpt in rcpts:
                    sim.ledger.refused(ch.key, token, rcpt, code="535 5.7.8")
            return "535 5.7.8 Authentication credentials invalid"
        if ch.bucket is not None and not ch.bucket.take():
            ch.throttled += 1
            for token in tokens:
                for rcpt in rcpts:
                    sim.ledger.refused(ch.key, token, rcpt, code="451 4.7.1", final=False)
            return "451 4.7.1 Rate limit exceeded, try again later"
        ch.accepted += 1
        entries = [sim.ledger.received(ch.key, token, rcpt) for token in tokens for rcpt in rcpts]
        rng = sim.rng_for(ch.key)
        if rng.random() >= ch.knobs.loss:
            delay = ch.knobs.latency.sample(rng)
            observed = any(rcpt.lower() in ch.observed for rcpt in rcpts)
            sim.deliver_later(ch, data, delay, entries, write=observed)
        else:
            for entry in entries:
                sim.ledger.dropped(entry)
        return f"250 2.0.0 Ok: queued as {queue_id}"


class MailSimulator(Simulator):
    """Far end of simulated mail channels: SMTP relays on loopback, one Maildir."""

    kind = "mail"

    def __init__(self, seed: int | None = None, host: str = "127.0.0.1", tls: bool = False) -> None:
        super().__init__(seed)
        self.host = host
        self.tls = tls
        self.channels: dict[str, _Channel] = {}
        self.root: Path | None = None
        self._server_context: ssl.SSLContext | None = None
        self._ca_file: str | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self._pending: set[asyncio.Task[None]] = set()
        self._names = itertools.count(1)
        self._started = False

    @staticmethod
    def placeholder_settings() -> dict[str, Any]:
        return {
            "smtp": {"host": "127.0.0.1", "port": 9, "security": "plain"},
            "from": f"drill@{_SIM_DOMAIN}",
            "to": [f"drill@{_SIM_DOMAIN}"],
        }

    @classmethod
    def settings_to_validate(cls, raw_settings: dict[str, Any]) -> dict[str, Any]:
        """As :meth:`add_channel` will hand them out: an observed Maildir, ``observed``
        defaulting to the first ``to`` (so ``observed:`` may be given on a ``sim:`` channel)."""
        merged = {**cls.placeholder_settings(), **raw_settings}
        if "maildir" not in raw_settings and "imap" not in raw_settings:
            merged["maildir"] = "/nonexistent/tsunagari-sim/Maildir"
            if "observed" not in raw_settings:
                to = merged.get("to")
                merged["observed"] = to if isinstance(to, str) else list(to or [])[:1]
        return merged

    @property
    def maildir(self) -> Path:
        assert self.root is not None, "start() first"
        return self.root / "Maildir"

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        _AIOSMTPD_LOG.addFilter(_LOGIN_DATA_NOTICE)
        self._ensure_root()
        for ch in self.channels.values():  # channels added before start
            if not ch.knobs.outage:
                await self._serve(ch)

    def _ensure_root(self) -> Path:
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="tsunagari-mailsim-"))
            for sub in ("tmp", "new", "cur"):
                (self.root / "Maildir" / sub).mkdir(parents=True)
        return self.root

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for ch in self.channels.values():
            self._close(ch, reserve=False)
        for task in list(self._pending):
            await stop_task(task)
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
        self._started = False
        _AIOSMTPD_LOG.removeFilter(_LOGIN_DATA_NOTICE)

    # ------------------------------------------------------------------ channels

    def add_channel(
        self, channel_key: str, knobs: SimKnobs, raw_settings: dict[str, Any]
    ) -> dict[str, Any]:
        raw_smtp = dict(raw_settings.get("smtp") or {})
        tls = self.tls or raw_smtp.get("security") in ("starttls", "tls")
        n = len(self.channels) + 1
        ch = _Channel(
            key=channel_key,
            knobs=knobs,
            user=f"sim{n}",
            password=secrets.token_hex(8),
            port=0,
            tls=tls,
            bucket=TokenBucket(knobs.rate_limit) if knobs.rate_limit else None,
        )
        # The port is held from now on: bound and listening, or bound only (an outage:
        # a bound socket that does not listen refuses connections).
        ch.sock = self._bind(0)
        ch.port = ch.sock.getsockname()[1]
        self.channels[channel_key] = ch
        self.knobs[channel_key] = knobs
        if knobs.outage:
            self.ledger.down(channel_key, True)
        else:
            self._listen(ch)
        smtp: dict[str, Any] = {
            "host": self.host,
            "port": ch.port,
            "security": "starttls" if tls else "plain",
            "user": ch.user,
            "password": SecretRef.inline(ch.password, label=f"mailsim:{channel_key}"),
            "timeout": 10,
        }
        if tls:
            smtp["ca_file"] = self._ensure_ca()
        if knobs.rate_limit:
            smtp["retries"] = 6
            smtp["retry_delay"] = round(max(0.05, 1.0 / knobs.rate_limit), 3)
        to = raw_settings.get("to") or [f"{ch.user}@{_SIM_DOMAIN}"]
        to = [to] if isinstance(to, str) else list(to)
        observed = raw_settings.get("observed") or to[:1]
        observed = [observed] if isinstance(observed, str) else list(observed)
        ch.observed = frozenset(a.lower() for a in observed)
        return {
            "smtp": smtp,
            "from": raw_settings.get("from") or f"drill@{_SIM_DOMAIN}",
            "to": to,
            "maildir": str(self._ensure_root() / "Maildir"),
            "observed": observed,
            "cleanup": "delete",
        }

    def set_outage(self, channel_key: str, down: bool) -> None:
        super().set_outage(channel_key, down)
        ch = self.channels[channel_key]
        ch.knobs = self.knobs[channel_key]
        if down:
            self._close(ch)
        else:
            self._listen(ch)

    def channel(self, channel_key: str) -> _Channel:
        return self.channels[channel_key]

    # ------------------------------------------------------------------ serving

    def _bind(self, port: int) -> socket.socket:
        # proto=IPPROTO_TCP so asyncio sets TCP_NODELAY on accepted connections:
        # without it, aiosmtpd's multi-line EHLO reply meets Nagle + delayed ACK (+40 ms).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, port))
        sock.setblocking(False)
        return sock

    def _listen(self, ch: _Channel) -> None:
        """Listen now (connections queue in the backlog); serve as soon as the loop runs."""
        if ch.server is not None:
            return
        if ch.sock is None:
            ch.sock = self._bind(ch.port)
        ch.sock.listen(512)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # start() serves
        task = loop.create_task(self._serve(ch))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _serve(self, ch: _Channel) -> None:
        if ch.server is not None or ch.sock is None:
            return
        sock, ch.sock = ch.sock, None
        loop = asyncio.get_running_loop()
        relay = _Relay(self, ch)
        context = self._context() if ch.tls else None

        def factory() -> SMTP:
            return SMTP(
                relay,
                hostname=f"relay{ch.port}.{_SIM_DOMAIN}",
                ident="Tsunagari mail simulator",
                tls_context=context,
                authenticator=relay.authenticate,
                auth_require_tls=False,
                loop=loop,
            )

        ch.server = await loop.create_server(factory, sock=sock, start_serving=True)

    def _close(self, ch: _Channel, *, reserve: bool = True) -> None:
        if ch.server is not None:
            ch.server.close()
            ch.server = None
        if ch.sock is not None:
            ch.sock.close()
            ch.sock = None
        if reserve:
            ch.sock = self._bind(ch.port)

    def deliver_later(
        self,
        ch: _Channel,
        data: bytes,
        delay: float,
        entries: list[Entry] | None = None,
        *,
        write: bool = True,
    ) -> None:
        """Store *data* after *delay*; *entries* become visible then (ledger).

        ``write=False``: the mail goes to mailboxes nobody observes (no file).
        """
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle | None = None

        def store() -> None:
            if timer is not None:
                self._timers.discard(timer)
            if self.root is None:
                return
            name = f"{time.time():.6f}.M{next(self._names)}P{os.getpid()}.mailsim"
            tmp = self.maildir / "tmp" / name
            if write:
                tmp.write_bytes(data)
            at = time.monotonic()  # before the rename: nobody can see it earlier
            if write:
                os.rename(tmp, self.maildir / "new" / name)
            for entry in entries or ():
                self.ledger.visible(entry, at=at)
            ch.stored += 1

        timer = loop.call_later(delay, store)
        self._timers.add(timer)

    # ------------------------------------------------------------------ TLS

    def _ensure_ca(self) -> str:
        if self._ca_file is None:
            self._make_certificates()
        assert self._ca_file is not None
        return self._ca_file

    def _context(self) -> ssl.SSLContext:
        if self._server_context is None:
            self._make_certificates()
        assert self._server_context is not None
        return self._server_context

    def _make_certificates(self) -> None:
        from probes.sim.mail_certs import make_ca_and_server_cert

        ca_file, chain_file, key_file = make_ca_and_server_cert(self._ensure_root(), self.host)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(chain_file, key_file)
        self._server_context = context
        self._ca_file = str(ca_file)
