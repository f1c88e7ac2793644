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

The connection is a :class:`Wire`: a non-blocking socket the loop only waits on,
with TLS on the C ``ssl`` module's memory BIOs, read and written a whole chunk
at a time — no asyncio transport and none of its Python-level TLS buffering
(``asyncio.sslproto``): about a quarter less CPU per HTTPS check
(docs/preflight.md, "Peer benchmark"). The mail check speaks its SMTP dialogue
over a Wire as well.
"""

from __future__ import annotations

import asyncio
import contextlib
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

    TLS runs on memory BIOs (:meth:`ssl.SSLContext.wrap_bio`): the socket is read
    and written in whole chunks — a handshake's server flight in one ``recv``, not
    a read per TLS record header and body as a socket-backed ``SSLSocket`` does —
    and the loop only says when the socket is ready, skipping asyncio's transport
    and its Python-level TLS buffering. The handshake is the same full, verified
    one (the context's CA store, chain and host name); nothing is cached.
    Each step's time limit is set with :meth:`limit` (a TimeoutError when it runs
    out); cancelling is safe at any await. ``async with await Wire.connect(address, port) as wire: ...`` closes it.
    """

    __slots__ = ("_buffer", "_deadline", "_fd", "_incoming", "_loop", "_outgoing", "sock", "tls")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.tls: ssl.SSLObject | None = None  # once start_tls has begun
        self._fd = sock.fileno()
        self._buffer = bytearray()  # plain text received and not yet read
        self._incoming = self._outgoing = _NO_BIO  # TLS records from / to the socket
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
        loop, fd = self._loop, self._fd
        done: asyncio.Future[None] = loop.create_future()
        timer = loop.call_at(self._deadline, _expire, done) if self._deadline < math.inf else None
        if write:
            loop.add_writer(fd, _wake, done)
        else:
            loop.add_reader(fd, _wake, done)
        try:
            await done
        finally:
            if write:
                loop.remove_writer(fd)
            else:
                loop.remove_reader(fd)
            if timer is not None:
                timer.cancel()

    async def start_tls(self, context: ssl.SSLContext, host: str) -> ssl.SSLObject:
        """The TLS handshake over this connection (verifying as *context* says)."""
        if self._buffer:  # bytes sent before the handshake: a server injecting plain text
            raise ChannelUnreachable(
                "TLS の前に余分なデータを受け取りました / unexpected data before the TLS handshake",
                code="tls",
            )
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=_idna(host))
        self.tls = tls  # from now on every byte goes through TLS (or fails: never plain text)
        try:
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    await self._flush()
                    await self._receive()
        except ssl.SSLError:
            # The alert saying why (e.g. the certificate expired) goes to the server, as an
            # SSLSocket's would: best effort, the check has failed either way.
            with contextlib.suppress(OSError):
                self.sock.send(self._outgoing.read())
            raise
        await self._flush()  # the client's Finished
        return tls

    async def _flush(self) -> None:
        """Send the TLS records written so far."""
        if self._outgoing.pending:
            await self._send(self._outgoing.read())

    async def _receive(self) -> bool:
        """Pass what the socket has (waiting for something) to TLS; False at its end."""
        while True:
            try:
                data = self.sock.recv(32_768)
            except BlockingIOError:
                await self._ready(write=False)
                continue
            if data:
                self._incoming.write(data)
            else:
                self._incoming.write_eof()
            return bool(data)

    async def _send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                sent = self.sock.send(view)
            except BlockingIOError:
                await self._ready(write=True)
                continue
            view = view[sent:]

    async def send(self, data: bytes) -> None:
        """Send *data* (through TLS once it is started)."""
        tls = self.tls
        if tls is None:
            await self._send(data)
            return
        tls.write(data)  # into a memory BIO: all of it, at once
        await self._flush()

    async def _fill(self) -> bool:
        """Read what has arrived into the buffer; False at the end of the stream."""
        tls = self.tls
        if tls is None:
            while True:
                try:
                    data = self.sock.recv(16_384)
                except BlockingIOError:
                    await self._ready(write=False)
                    continue
                self._buffer += data
                return bool(data)
        while True:
            try:
                data = tls.read(16_384)
            except ssl.SSLWantReadError:
                await self._flush()  # anything TLS itself has to say (a key update)
                await self._receive()
                continue
            except ssl.SSLEOFError:  # closed without close_notify: an end, as SSLSocket says
                return False
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

    async def read_lines(self, limit: int = 65_536) -> list[bytes]:
        """Every whole line received so far, without their ``\\n`` — at least one (waits
        for it); the errors of :meth:`read_line`. A dialogue that reads a reply of many
        lines (SMTP's EHLO) takes them in one go, and :meth:`unread` puts back what
        belongs to the next reply."""
        while True:
            end = self._buffer.rfind(b"\n")
            if end >= 0:
                lines = bytes(self._buffer[:end]).split(b"\n")
                del self._buffer[: end + 1]
                return lines
            if len(self._buffer) > limit:
                raise ConnectionError(f"a line longer than {limit} bytes")
            if not await self._fill():
                raise ConnectionResetError("the server closed the connection")

    def unread(self, data: bytes) -> None:
        """Put *data* back in front of what is still to be read."""
        self._buffer[:0] = data


_NO_BIO = ssl.MemoryBIO()  # before start_tls: empty, never written


@functools.lru_cache(maxsize=4096)
def _idna(host: str) -> bytes:
    """*host* as the ``ssl`` module encodes it for SNI and the name check (IDNA), once
    per host name rather than once per handshake.

    >>> _idna("127.0.0.1"), _idna("例え.jp")
    (b'127.0.0.1', b'xn--r8jz45g.jp')
    """
    return host.encode("idna")


def _wake(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


def _expire(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_exception(TimeoutError())


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
    with timer.phase(f"{name}.dns", "dns") as note:
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
    with timer.phase(f"{name}.connect", "connect") as note:
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
        with timer.phase(f"{name}.tls", "tls") as note:
            if scheme != "https":
                note["detail"] = NOT_TLS
                return wire
            await _handshake(timer, name, host, port, address, wire, context, timeout)
            note["detail"] = str(wire.tls.version()) if wire.tls is not None else ""
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
    path, query = _path_query(url)
    if params:
        query = "&".join(q for q in (query, urlencode(dict(params))) if q)
    return path + (f"?{query}" if query else "")


@functools.lru_cache(maxsize=4096)
def _path_query(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.path or "/", parts.query


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
        with timer.phase(f"{name}.read", "read") as note:
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
