"""An SMTP front (aiosmtpd) that hands each message to Dovecot's LMTP.

It answers 250 after DATA only once LMTP accepted the message (FIELD-NOTES.md:
"a faithful, fast SMTP front"), and relays LMTP's refusal codes otherwise;
LMTP down → ``451 4.4.1``. It offers STARTTLS on ``port`` and SMTPS on
``smtps_port`` when given a server certificate, AUTH PLAIN/LOGIN against
``users``, and fault hooks (``faults``) that answer a chosen reply at a chosen
step, as pytest-httpserver's hooks do for HTTP. A fault may also *hold* its
step until the test releases it (e.g. a QUIT that hangs after the 250), and
records when each of its replies was given (``Fault.answered``, monotonic; for a
held step, when the step was reached).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from probes.sim.base import free_port

# aiosmtpd logs a deprecation notice on every AUTH (its own internals); keep test logs readable.
logging.getLogger("mail.log").addFilter(
    lambda record: "login_data is deprecated" not in record.getMessage()
)


async def lmtp_deliver(
    host: str, port: int, sender: str, recipients: list[str], data: bytes, timeout: float = 10
) -> tuple[int, str]:
    """One LMTP transaction; returns the first failure (code, text) or (250, text)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)

    async def reply() -> tuple[int, str]:
        lines = []
        while True:
            line = await asyncio.wait_for(reader.readline(), timeout)
            if not line:
                raise ConnectionError("LMTP closed the connection")
            lines.append(line[4:].decode("utf-8", "replace").strip())
            if line[3:4] != b"-":
                return int(line[:3]), " ".join(lines)

    async def command(text: str) -> tuple[int, str]:
        writer.write(text.encode() + b"\r\n")
        await writer.drain()
        return await reply()

    try:
        await reply()
        for step in ("LHLO front.test", f"MAIL FROM:<{sender}>"):
            code, text = await command(step)
            if code >= 400:
                return code, text
        for rcpt in recipients:
            code, text = await command(f"RCPT TO:<{rcpt}>")
            if code >= 400:
                return code, text
        code, text = await command("DATA")
        if code != 354:
            return code, text
        body = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        body = b"\r\n".join(b"." + ln if ln.startswith(b".") else ln for ln in body.split(b"\r\n"))
        writer.write(body + b".\r\n")
        await writer.drain()
        result = (250, "")
        for _ in recipients:
            code, text = await reply()
            if code >= 400 and result[0] < 400:
                result = (code, text)
            elif result[0] < 400:
                result = (code, text)
        writer.write(b"QUIT\r\n")
        return result
    finally:
        writer.close()


@dataclass
class Fault:
    """Answer *reply* at *stage* ("mail", "rcpt", "data", "quit") for the next *times* messages.

    With ``hold`` the step first waits until ``hold`` is set (at most ``hold_max`` s);
    an empty *reply* then lets the step go on as normal.
    """

    stage: str
    reply: str
    times: int = 1_000_000
    hold: threading.Event | None = None
    hold_max: float = 30.0
    answered: list[float] = field(default_factory=list)  # monotonic, one per reply


@dataclass
class _Handler:
    front: LmtpFront
    ids: Any = field(default_factory=lambda: itertools.count(1))

    def _take(self, stage: str) -> Fault | None:
        with self.front.lock:
            for fault in self.front.faults:
                if fault.stage == stage and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    async def _fault(self, stage: str) -> str | None:
        """The fault's reply at *stage* (None: none); a held step first waits for its release."""
        fault = self._take(stage)
        if fault is None:
            return None
        fault.answered.append(time.monotonic())
        if fault.hold is not None:
            await asyncio.to_thread(fault.hold.wait, fault.hold_max)
        return fault.reply

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> Any:
        fault = self._take("quit")
        if fault is None:
            return "221 Bye"
        fault.answered.append(time.monotonic())
        if fault.hold is not None:
            await asyncio.to_thread(fault.hold.wait, fault.hold_max)
        return fault.reply or "221 Bye"

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = await self._fault("mail")
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = await self._fault("rcpt")
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = await self._fault("data")
        if reply:
            return reply
        data = envelope.original_content or b""
        try:
            code, text = await lmtp_deliver(
                "127.0.0.1", self.front.lmtp_port, envelope.mail_from or "", envelope.rcpt_tos, data
            )
        except (OSError, ConnectionError, TimeoutError) as exc:
            return f"451 4.4.1 LMTP unavailable: {exc.__class__.__name__}"
        if code >= 400:
            return f"{code} {text}"
        self.front.accepted += 1
        self.front.accepted_at.append(time.monotonic())
        return f"250 2.0.0 Ok: queued as F{next(self.ids)}"


@dataclass
class LmtpFront:
    lmtp_port: int
    users: dict[str, str] = field(default_factory=lambda: {"sender": "sendpass"})
    server_context: ssl.SSLContext | None = None  # enables STARTTLS and SMTPS
    port: int = 0
    smtps_port: int = 0
    faults: list[Fault] = field(default_factory=list)
    accepted: int = 0
    accepted_at: list[float] = field(default_factory=list)  # monotonic, as 250 is answered
    lock: threading.Lock = field(default_factory=threading.Lock)
    _controllers: list[Controller] = field(default_factory=list)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            user = auth_data.login.decode()
            if self.users.get(user) == auth_data.password.decode():
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    def start(self) -> LmtpFront:
        handler = _Handler(self)
        common: dict[str, Any] = dict(
            hostname="127.0.0.1",
            authenticator=self._authenticate,
            auth_require_tls=False,
            server_hostname="front.test",
        )
        self.port = self.port or free_port()
        plain = Controller(handler, port=self.port, tls_context=self.server_context, **common)
        plain.start()
        self._controllers.append(plain)
        if self.server_context is not None:
            self.smtps_port = self.smtps_port or free_port()
            smtps = Controller(
                handler, port=self.smtps_port, ssl_context=self.server_context, **common
            )
            smtps.start()
            self._controllers.append(smtps)
        return self

    def stop(self) -> None:
        for controller in self._controllers:
            controller.stop()
        self._controllers.clear()

    def fail(
        self, stage: str, reply: str, times: int = 1_000_000, hold: threading.Event | None = None
    ) -> Fault:
        fault = Fault(stage, reply, times, hold)
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()
