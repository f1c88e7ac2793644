"""From a channel's validated settings to the endpoint a Locust user loads.

Dispatch on the channel kind through :data:`ENDPOINTS` (a mapping, not a
ladder); each builder reads the kind's settings model — the same one its
probe uses — and reveals the secrets the load needs. The result goes only
into the 0600 config file (:mod:`drills.surge.config`); ``secrets`` lists the
revealed values so that anything shown to a human can be scrubbed of them.

    >>> from probes.chat.webhook import WebhookSettings
    >>> ep = endpoint_for("webhook", WebhookSettings(url="http://127.0.0.1:8080/hooks/r1?x=1"))
    >>> ep.load, ep.host, ep.params["path"]
    ('webhook', 'http://127.0.0.1:8080', '/hooks/r1?x=1')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from drills.core.errors import ScenarioError
from probes.base import ChannelSettings
from probes.settings import SecretRef

__all__ = ["ENDPOINTS", "Endpoint", "endpoint_for", "scrub"]

TWILIO_API = "https://api.twilio.com"


@dataclass(frozen=True)
class Endpoint:
    """Where and how the load goes: a load kind, a base URL for HTTP kinds, parameters."""

    load: str
    host: str
    params: dict[str, Any] = field(repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False)


def _reveal(value: Any) -> str | None:
    if value is None:
        return None
    return value.reveal() if isinstance(value, SecretRef) else str(value)


def _base_and_path(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ScenarioError(f"http(s) の URL ではありません / not an http(s) URL ({parts.scheme}:)")
    if parts.username is not None or parts.password is not None:
        # The base URL goes on Locust's command line: it must not carry credentials.
        raise ScenarioError(
            "URL に認証情報を含むチャネルにはサージできません / "
            "cannot surge a channel whose URL embeds credentials"
        )
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return f"{parts.scheme}://{parts.netloc}", path


def _webhook(settings: Any) -> Endpoint:
    host, path = _base_and_path(settings.url)
    token = _reveal(settings.auth)
    params = {
        "path": path,
        "format": settings.format,
        "field": settings.field,
        "token": token,
    }
    return Endpoint("webhook", host, params, tuple(s for s in (token,) if s))


def _mail(settings: Any) -> Endpoint:
    smtp = settings.smtp  # probes.mail.smtp.SmtpSettings
    password = _reveal(smtp.password)
    params = {
        "host": smtp.host,
        "port": smtp.effective_port,
        "security": smtp.security,
        "user": smtp.user,
        "password": password,
        "verify": smtp.verify,
        "ca_file": smtp.ca_file,
        "helo": smtp.helo,
        "timeout": smtp.timeout,
        "sender": settings.sender,
        "to": list(settings.to),
    }
    return Endpoint("smtp", "", params, tuple(s for s in (password,) if s))


def _twilio(settings: Any) -> Endpoint:
    sid = _reveal(settings.account_sid) or ""
    token = _reveal(settings.auth_token) or ""
    host, _ = _base_and_path(settings.api_base or TWILIO_API)
    params = {
        # https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource
        "path": f"/2010-04-01/Accounts/{sid}/Messages.json",
        "sid": sid,
        "token": token,
        "from": settings.from_,
        "to": list(settings.to),
    }
    return Endpoint("twilio", host, params, tuple(s for s in (sid, token) if s))


# Channel kind → endpoint builder. Kinds not listed cannot be surged (yet).
ENDPOINTS: dict[str, Callable[[Any], Endpoint]] = {
    "webhook": _webhook,
    "mail": _mail,
    "twilio": _twilio,
}


def endpoint_for(kind: str, settings: ChannelSettings) -> Endpoint:
    """The load endpoint of a channel of *kind*; :class:`ScenarioError` if it cannot be surged."""
    builder = ENDPOINTS.get(kind)
    if builder is None:
        known = ", ".join(sorted(ENDPOINTS))
        raise ScenarioError(
            f"種別 {kind!r} にはサージ負荷がありません（対応: {known}） / "
            f"no surge load for kind {kind!r} (supported: {known})"
        )
    return builder(settings)


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """*text* with every secret value replaced by ``***`` (for log tails shown to humans)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
