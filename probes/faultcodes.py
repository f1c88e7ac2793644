"""The reason code of a probe's refusal, from an HTTP answer or a failed exchange: pure.

Every :class:`~probes.base.ProbeError` a probe raises carries a ``code`` that
:mod:`drills.core.taxonomy` classifies (a test scans ``probes/`` for any raise
without one). These two make the codes that are not a provider's own words:
:func:`http_code` keeps the HTTP status with a provider's error id, and
:func:`transport_code` names what broke below HTTP.
"""

from __future__ import annotations

__all__ = ["http_code", "transport_code"]


def http_code(ident: str, status: int) -> str:
    """The code of a provider's answer: its own error id with the HTTP status it came with.

    The status is kept: a generic id (``M_UNKNOWN``, ``….app_error``) says nothing on
    its own, the status does (:mod:`drills.core.taxonomy` reads the id, then the status).

    >>> http_code("M_UNKNOWN", 500), http_code("", 404)
    ('M_UNKNOWN HTTP 500', 'HTTP 404')
    """
    return f"{ident} HTTP {status}" if ident else f"HTTP {status}"


def transport_code(exc: BaseException) -> str:
    """The code of an exchange that failed below HTTP, from *exc* and what it was raised from.

    ``tls`` (handshake or certificate), ``dns`` (the name does not resolve), ``timeout``,
    ``cut_off`` (the server hung up before a whole answer), else ``connect``.

    >>> import socket, ssl
    >>> [transport_code(e) for e in (ssl.SSLError(), socket.gaierror(), TimeoutError(), OSError())]
    ['tls', 'dns', 'timeout', 'connect']
    """
    import socket
    import ssl

    import aiohttp

    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ssl.SSLError):
            return "tls"
        if isinstance(cause, socket.gaierror | aiohttp.ClientConnectorDNSError):
            return "dns"
        if isinstance(cause, TimeoutError):
            return "timeout"
        if isinstance(cause, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
            return "cut_off"
        cause = cause.__cause__ or cause.__context__
    return "connect"
