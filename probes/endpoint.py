"""The network half of a preflight: DNS, TCP connect and TLS to one HTTP(S) endpoint.

Chat kinds and Twilio talk HTTPS through pooled clients that hide the
handshake, so a check opens one connection of its own to each endpoint and
times what the pooled client would do first::

    async with PhaseTimer("131211/chat", "slack") as timer:
        await check_endpoint(timer, "api", "https://slack.com/api/", timeout=10)
        ...                                 # then the kind's own auth and read calls

Phases ``{name}.dns`` (an IP address is taken as it is, without asking the
resolver's thread), ``{name}.connect`` and ``{name}.tls``. The TLS phase
verifies the chain and the host name like the clients do (system CAs, or the
``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` the environment names) and records the
peer certificate's ``notAfter`` with :meth:`PhaseTimer.certificate` — also
when verification fails (an expired certificate still says when it expired:
fetched once more without verification, for its date only). A ``http://`` URL
(the loopback simulators) has no certificate: the TLS phase says "not TLS"
and records none. Nothing is sent over the connection; it is closed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import os
import socket
import ssl
from urllib.parse import urlsplit

from probes.base import ChannelUnreachable
from probes.preflight import PhaseTimer, not_after_of

__all__ = ["NOT_TLS", "check_endpoint", "endpoint_of", "verify_context"]

NOT_TLS = "TLS なし（http://、証明書なし） / not TLS (http://, no certificate)"


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


def _literal(host: str) -> str | None:
    """*host* itself when it is an IP address: nothing to resolve, no resolver thread.

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


async def check_endpoint(
    timer: PhaseTimer,
    name: str,
    url: str,
    *,
    timeout: float,
    context: ssl.SSLContext | None = None,
) -> None:
    """DNS, connect and TLS phases for *url*; its certificate recorded under *name*."""
    scheme, host, port = endpoint_of(url)
    where = f"{host}:{port}"
    loop = asyncio.get_running_loop()
    async with timer.phase(f"{name}.dns", "dns") as note:
        address = _literal(host)
        if address is None:
            try:
                async with asyncio.timeout(timeout):
                    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except socket.gaierror as exc:
                raise ChannelUnreachable(
                    f"{host} の名前解決ができません / cannot resolve {host}: {exc.strerror}",
                    code="dns",
                ) from exc
            address = str(infos[0][4][0])
        note["detail"] = address
    async with timer.phase(f"{name}.connect", "connect") as note:
        try:
            async with asyncio.timeout(timeout):
                _reader, writer = await asyncio.open_connection(address, port)
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
                return
            await _handshake(timer, name, host, port, address, writer, context, timeout)
            note["detail"] = _tls_detail(writer)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            async with asyncio.timeout(1.0):
                await writer.wait_closed()


async def _handshake(
    timer: PhaseTimer,
    name: str,
    host: str,
    port: int,
    address: str,
    writer: asyncio.StreamWriter,
    context: ssl.SSLContext | None,
    timeout: float,
) -> None:
    try:
        async with asyncio.timeout(timeout):
            await writer.start_tls(context or verify_context(), server_hostname=host)
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
    ssl_object = writer.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    timer.certificate(name, host, port, not_after_of(der))


async def _peer_not_after(address: str, port: int, host: str, timeout: float) -> float | None:
    """The notAfter of a certificate that failed verification (read, never trusted)."""
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(
                address, port, ssl=_unverified_context(), server_hostname=host
            )
    except (OSError, TimeoutError):
        return None
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        return not_after_of(ssl_object.getpeercert(binary_form=True) if ssl_object else None)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            async with asyncio.timeout(1.0):
                await writer.wait_closed()


def _tls_detail(writer: asyncio.StreamWriter) -> str:
    ssl_object = writer.get_extra_info("ssl_object")
    return str(ssl_object.version()) if ssl_object is not None else ""
