"""TLS for the mail channel: client contexts and what a server certificate tells us.

Verification is on by default; ``ca_file`` adds a private CA (a municipality's
own, or the tests' ``trustme`` CA). Days to expiry are read from the peer
certificate even when verification is off, so an expiring certificate shows on
the scorecard before it breaks mail.
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import ssl
from typing import Any

__all__ = ["cert_days_left", "client_context", "is_certificate_error", "tls_reason"]


def client_context(*, verify: bool = True, ca_file: str | None = None) -> ssl.SSLContext:
    """A client context: system CAs plus *ca_file*; hostname checked unless ``verify`` is off.

    Contexts are cached per (verify, ca_file): loading the system CA store costs
    milliseconds and a few hundred kB each time, and a context serves any number
    of connections. A changed CA file is picked up when its mtime changes.
    """
    mtime = os.stat(ca_file).st_mtime_ns if ca_file else 0
    return _client_context(verify, ca_file, mtime)


@functools.lru_cache(maxsize=64)
def _client_context(verify: bool, ca_file: str | None, _mtime: int) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def cert_days_left(ssl_object: Any, now: _dt.datetime | None = None) -> int | None:
    """Whole days until the peer certificate expires (negative once expired), or None."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    from cryptography import x509  # imported on use: only TLS sessions need it

    cert = x509.load_der_x509_certificate(der)
    now = now or _dt.datetime.now(_dt.UTC)
    return (cert.not_valid_after_utc - now).days


def is_certificate_error(exc: BaseException | None) -> bool:
    """Is *exc* (or anything in its cause chain) a TLS failure?"""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, ssl.SSLError | ssl.CertificateError):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def tls_reason(exc: BaseException) -> str:
    """A short TLS failure reason: verify errors name what failed, never secrets."""
    cur: BaseException | None = exc
    while cur is not None:
        if isinstance(cur, ssl.SSLCertVerificationError):
            detail = getattr(cur, "verify_message", None) or cur
            return f"証明書を検証できません / certificate verification failed: {detail}"
        if isinstance(cur, ssl.SSLError):
            return f"TLS ハンドシェイク失敗 / TLS handshake failed: {cur.reason or cur}"
        cur = cur.__cause__ or cur.__context__
    return f"TLS 失敗 / TLS failure: {exc}"
