"""The network half of a preflight: DNS, TCP connect and TLS to one HTTP(S) endpoint.

Chat kinds and Twilio talk HTTPS through pooled clients that hide the
handshake, so a check opens one connection of its own to each endpoint and
times what the pooled client would do first::

    async with PhaseTimer("131211/chat", "slack") as timer:
        await check_endpoint(timer, "api", "https://slack.com/api/", timeout=10)
        ...                                 # then the kind's own auth and read calls

Phases ``{name}.dns`` (an IP address is taken as it is), ``{name}.connect`` and
``{name}.tls``. The TLS phase verifies the chain and the host name like the
clients do (system CAs, or the ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` the
environment names) and records the peer certificate's ``notAfter`` with
:meth:`PhaseTimer.certificate` — also when verification fails (an expired
certificate still says when it expired: fetched once more without
verification, for its date only). A ``http://`` URL (the loopback simulators)
has no certificate: the TLS phase says "not TLS" and records none.
:func:`check_get` goes on over the same connection with one ``GET`` (phase
``{name}.read``) and returns its status: one full handshake per check, never a
pooled connection.

The connection is a :class:`Wire`: a non-blocking socket that the C ``ssl``
module works directly while the loop only waits for readiness — no asyncio
transport and none of its Python-level TLS buffering (``asyncio.sslproto``):
about a quarter less CPU per HTTPS check (docs/preflight.md, "Peer benchmark").
The mail check speaks its SMTP dialogue over a Wire as well.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import math
import os
import socket
import ssl
from collections.abc import Callable, Mapping
from urllib.parse import urlencode, urlsplit

from probes.base import ChannelUnreachable
from probes.preflight import PhaseTimer, not_after_of

__all__ = [
    "NOT_TLS",
    "Wire",
    "check_endpoint",
    "check_get",
    "endpoint_of",
    "request_target",
    "status_of",
    "verify_context",
]

NOT_TLS = "TLS なし（http://、証明書なし） / not TLS (http://, no certificate)"
USER_AGENT = "tsunagari-preflight"


@functools.lru_cache(maxsize=4096)  # a channel's URLs are checked again and again
def endpoint_of(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of *url*; the path and query (which may hold a secret) dropped.

    >>> endpoint_of("https://prod-01.logic.azure.com/workflows/x?sig=SECRET")
    ('https', 'prod-01.logic.azure.com', 443)
    >>> endpoint_of("http://127.0.0.1:8080/api/")
    ('http', '127.0.0.1', 8080)
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, parts.hostname or "", port


@functools.lru_cache(maxsize=4096)
def _literal(host: str) -> str | None:
    """*host* itself when it is an IP address: nothing to resolve.

    >>> _literal("127.0.0.1"), _literal("::1"), _literal("slack.com")
    ('127.0.0.1', '::1', None)
    """
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def verify_context() -> ssl.SSLContext:
    """The verifying client context (system CAs, or the environment's ``SSL_CERT_FILE``)."""
    return _verify_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=8)
def _verify_context(_cafile: str | None, _capath: str | None) -> ssl.SSLContext:
    # Loading the CA store costs ~15 ms of CPU: once per environment, not once per check.
    return ssl.create_default_context()


@functools.cache
def _unverified_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


# ------------------------------------------------------------------ the wire


class Wire:
    """One TCP connection, then TLS over it, on a non-blocking socket the loop drives.

    The C ``ssl`` module works the socket itself (``do_handshake``, ``recv``,
    ``send``); the loop only says when the socket is ready, skipping asyncio's
    transport and its Python-level TLS buffering.
    Each step's time limit is set with :meth:`limit` (a TimeoutError when it runs
    out); cancelling is safe at any await. ``async with await Wire.connect(address, port) as wire: ...`` closes it.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = bytearray()
        self._loop = asyncio.get_running_loop()
        self._deadline = math.inf  # loop time by which the current step must be done

    @classmethod
    async def connect(cls, address: str, port: int, timeout: float) -> Wire:
        """A TCP connection to *address*, made within *timeout* (else TimeoutError)."""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        wire = cls(sock)
        wire.limit(timeout)
        try:
            try:
                sock.connect((address, port))
            except BlockingIOError:
                await wire._ready(write=True)
                error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error:
                    raise OSError(error, os.strerror(error)) from None  # e.g. refused
        except BaseException:
            sock.close()
            raise
        return wire

    def limit(self, timeout: float) -> None:
        """The steps from now on must be done within *timeout* seconds (else TimeoutError).

        One timer per wait instead of an ``asyncio.timeout`` per step: the same limit,
        a fraction of the bookkeeping.
        """
        self._deadline = self._loop.time() + timeout

    async def __aenter__(self) -> Wire:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    async def _ready(self, write: bool) -> None:
        fd = self.sock.fileno()
        done: asyncio.Future[None] = self._loop.create_future()

        def wake() -> None:
            if not done.done():
                done.set_result(None)

        def expire() -> None:
            if not done.done():
                done.set_exception(TimeoutError())

        timer = self._loop.call_at(self._deadline, expire) if self._deadline < math.inf else None
        if write:
            self._loop.add_writer(fd, wake)
        else:
            self._loop.add_reader(fd, wake)
        try:
            await done
        finally:
            (self._loop.remove_writer if write else self._loop.remove_reader)(fd)
            if timer is not None:
                timer.cancel()

    async def start_tls(self, context: ssl.SSLContext, host: str) -> ssl.SSLSocket:
        """The TLS handshake over this connection (verifying as *context* says)."""
        if self._buffer:  # bytes sent before the handshake: a server injecting plain text
            raise ChannelUnreachable(
                "TLS の前に余分なデータを受け取りました / unexpected data before the TLS handshake",
                code="tls",
            )
        secure = context.wrap_socket(self.sock, server_hostname=host, do_handshake_on_connect=False)
        self.sock = secure
        while True:
            try:
                secure.do_handshake()
                return secure
            except ssl.SSLWantReadError:
                await self._ready(write=False)
            except ssl.SSLWantWriteError:
                await self._ready(write=True)

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                sent = self.sock.send(view)
            except (BlockingIOError, ssl.SSLWantWriteError):
                await self._ready(write=True)
                continue
            except ssl.SSLWantReadError:
                await self._ready(write=False)
                continue
            view = view[sent:]

    async def _fill(self) -> bool:
        """Read what has arrived into the buffer; False at the end of the stream."""
        while True:
            try:
                data = self.sock.recv(16_384)
            except (BlockingIOError, ssl.SSLWantReadError):
                await self._ready(write=False)
                continue
            except ssl.SSLWantWriteError:
                await self._ready(write=True)
                continue
            self._buffer += data
            return bool(data)

    async def read_line(self, limit: int = 65_536) -> bytes:
        """One line, with its ``\\n``; an error when the peer closes first or it is too long."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                return line
            if len(self._buffer) > limit:
                raise ConnectionError(f"a line longer than {limit} bytes")
            if not await self._fill():
                raise ConnectionResetError("the server closed the connection")


# ------------------------------------------------------------- the phases


async def _dial(
    timer: PhaseTimer,
    name: str,
    url: str,
    timeout: float,
    context: ssl.SSLContext | None,
) -> Wire:
    """Phases ``{name}.dns``, ``.connect``, ``.tls``: the open connection."""
    scheme, host, port = endpoint_of(url)
    where = f"{host}:{port}"
    async with timer.phase(f"{name}.dns", "dns") as note:
        address = _literal(host)
        if address is None:
            try:
                async with asyncio.timeout(timeout):
                    infos = await asyncio.get_running_loop().getaddrinfo(
                        host, port, type=socket.SOCK_STREAM
                    )
            except socket.gaierror as exc:
                raise ChannelUnreachable(
                    f"{host} の名前解決ができません / cannot resolve {host}: {exc.strerror}",
                    code="dns",
                ) from exc
            address = str(infos[0][4][0])
        note["detail"] = address
    async with timer.phase(f"{name}.connect", "connect") as note:
        try:
            wire = await Wire.connect(address, port, timeout)
        except ConnectionRefusedError as exc:
            raise ChannelUnreachable(
                f"{where} への接続が拒否されました / connection to {where} refused",
                code="connect",
            ) from exc
        except TimeoutError as exc:
            raise ChannelUnreachable(
                f"{where} に {timeout:g} 秒以内に接続できません / "
                f"cannot connect to {where} within {timeout:g} s",
                code="timeout",
            ) from exc
        note["detail"] = f"{address}:{port}"
    try:
        async with timer.phase(f"{name}.tls", "tls") as note:
            if scheme != "https":
                note["detail"] = NOT_TLS
                return wire
            await _handshake(timer, name, host, port, address, wire, context, timeout)
            note["detail"] = (
                str(wire.sock.version()) if isinstance(wire.sock, ssl.SSLSocket) else ""
            )
    except BaseException:
        wire.close()
        raise
    return wire


async def _handshake(
    timer: PhaseTimer,
    name: str,
    host: str,
    port: int,
    address: str,
    wire: Wire,
    context: ssl.SSLContext | None,
    timeout: float,
) -> None:
    try:
        wire.limit(timeout)
        secure = await wire.start_tls(context or verify_context(), host)
    except ssl.SSLCertVerificationError as exc:
        # Say when it expires (or expired) all the same: the date is what people act on.
        timer.certificate(name, host, port, await _peer_not_after(address, port, host, timeout))
        detail = exc.verify_message or str(exc)
        raise ChannelUnreachable(
            f"{host}:{port} の証明書を検証できません（{detail}） / "
            f"certificate of {host}:{port} failed verification: {detail}",
            code="tls",
        ) from exc
    except ssl.SSLError as exc:
        raise ChannelUnreachable(
            f"{host}:{port} と TLS で接続できません（{exc.reason}） / "
            f"TLS handshake with {host}:{port} failed: {exc.reason}",
            code="tls",
        ) from exc
    timer.certificate(name, host, port, not_after_of(secure.getpeercert(binary_form=True)))


async def _peer_not_after(address: str, port: int, host: str, timeout: float) -> float | None:
    """The notAfter of a certificate that failed verification (read, never trusted)."""
    try:
        async with await Wire.connect(address, port, timeout) as wire:
            secure = await wire.start_tls(_unverified_context(), host)
            return not_after_of(secure.getpeercert(binary_form=True))
    except (OSError, TimeoutError):  # also ssl.SSLError
        return None


async def check_endpoint(
    timer: PhaseTimer,
    name: str,
    url: str,
    *,
    timeout: float,
    context: ssl.SSLContext | None = None,
) -> None:
    """DNS, connect and TLS phases for *url*; its certificate recorded under *name*."""
    wire = await _dial(timer, name, url, timeout, context)
    wire.close()


def request_target(url: str, params: Mapping[str, str]) -> str:
    """The path and query of *url* with *params* added (as aiohttp's ``params=`` does).

    >>> request_target("https://h/rooms/1?x=1", {"after": "9", "wait": "0"})
    '/rooms/1?x=1&after=9&wait=0'
    >>> request_target("https://h", {})
    '/'
    """
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(dict(params))) if q)
    return (parts.path or "/") + (f"?{query}" if query else "")


def status_of(line: bytes) -> int:
    """The status code of an HTTP/1.x status line.

    >>> status_of(b"HTTP/1.1 204 No Content\\r\\n")
    204
    >>> status_of(b"SSH-2.0-OpenSSH\\r\\n")
    Traceback (most recent call last):
    ValueError: not an HTTP status line: 'SSH-2.0-OpenSSH'
    """
    version, _, rest = line.decode("latin-1").strip().partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not (code.isdigit() and len(code) == 3):
        raise ValueError(f"not an HTTP status line: {line.decode('latin-1').strip()[:80]!r}")
    return int(code)


async def check_get(
    timer: PhaseTimer,
    name: str,
    url: str,
    *,
    timeout: float,
    judge: Callable[[int], object] | None = None,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> int:
    """Phases ``{name}.dns/.connect/.tls``, then ``{name}.read``: one ``GET`` of *url*
    over that same connection (``Connection: close``; the body is not read). Returns
    the status; *judge* (raising a ProbeError) is called inside the read phase.
    """
    _scheme, host, port = endpoint_of(url)
    async with await _dial(timer, name, url, timeout, context) as wire:
        async with timer.phase(f"{name}.read", "read") as note:
            lines = [
                f"GET {request_target(url, params or {})} HTTP/1.1",
                f"Host: {host}" if port in (80, 443) else f"Host: {host}:{port}",
                f"User-Agent: {USER_AGENT}",
                "Accept: */*",
                "Connection: close",
                *(f"{k}: {v}" for k, v in (headers or {}).items()),
            ]
            try:
                wire.limit(timeout)
                await wire.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
                status = status_of(await wire.read_line())
            except (OSError, ValueError) as exc:
                if isinstance(exc, ssl.SSLError):
                    raise
                raise ChannelUnreachable(
                    f"{host}:{port} の応答を読めません（{exc}） / "
                    f"cannot read the answer of {host}:{port}: {exc}",
                    code="connect",
                ) from exc
            note["detail"] = f"HTTP {status}"
            if judge is not None:
                judge(status)
    return status
