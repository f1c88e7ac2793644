"""``module=tls``: a channel's endpoints up to their TLS — nothing logged in, nothing read.

blackbox_exporter's modules choose how much a probe does; ``/probe?module=tls``
is the small one: for every endpoint the channel talks to, the phases DNS,
connect and TLS (with its certificate's ``notAfter``), and no credential is
used, so no provider API is called and no rate limit applies::

    report = await tls_check(probe)      # the probe the runner built for the target

What each kind's endpoints are:

- mail: SMTP up to and with STARTTLS (banner, EHLO, STARTTLS, handshake) or the
  SMTPS handshake; IMAP up to its TLS (greeting, STARTTLS) — no AUTH, no LOGIN;
- webhook: ``health_url`` and the observer's read-back URL (no GET);
- Matrix, Slack, Mattermost, Teams, LINE WORKS: the endpoints their full check
  connects to first (:meth:`probes.chat.preflight.ChatCheck.endpoints`);
- Twilio: the API, and ``status_callback.public_url`` when the full check would
  look at it.

Any other kind is reported skipped.
"""

from __future__ import annotations

from probes.base import Probe
from probes.endpoint import check_endpoint, endpoint_of
from probes.preflight import PhaseTimer, PreflightReport, Reason

__all__ = ["MODULES", "tls_check"]

MODULES = ("full", "tls")  # /probe?module=…; full is the kind's whole check


def _chat_endpoints(probe: Probe) -> list[tuple[str, str]] | None:
    from probes.chat import checks
    from probes.chat.webhook import WebhookProbe

    if isinstance(probe, WebhookProbe):
        s = probe.settings
        out = [("health", s.health_url)] if s.health_url is not None else []
        return out + ([("observer", s.observer.url)] if s.observer is not None else [])
    check = {
        "matrix": checks.MatrixCheck,
        "slack": checks.SlackCheck,
        "mattermost": checks.MattermostCheck,
        "teams": checks.TeamsCheck,
        "lineworks": checks.LineWorksCheck,
    }.get(probe.kind)
    return None if check is None else check(probe).endpoints()


def _twilio_endpoints(probe: Probe) -> list[tuple[str, str]] | None:
    from probes.sms.preflight import TWILIO_API, _own_listener
    from probes.sms.probe import TwilioProbe

    if not isinstance(probe, TwilioProbe):
        return None
    s = probe.settings
    out = [("api", s.api_base or TWILIO_API)]
    callback = s.status_callback
    if callback is not None and callback.public_url is not None:
        if not _own_listener(callback.public_url, callback.listen_host, callback.listen_port):
            out.append(("callback", callback.public_url))
    return out


async def tls_check(probe: Probe) -> PreflightReport:
    """The ``module=tls`` report of *probe*'s channel (skipped for a kind without one)."""
    from probes.mail.check import preflight_mail_tls
    from probes.mail.probe import MailProbe

    if isinstance(probe, MailProbe):
        return await preflight_mail_tls(probe.channel_id, probe.settings)
    endpoints = _chat_endpoints(probe)
    if endpoints is None:
        endpoints = _twilio_endpoints(probe)
    if endpoints is None:
        why = Reason(
            f"種類 {probe.kind} には TLS のみの確認がありません",
            f"kind {probe.kind} has no TLS-only check",
        )
        return PreflightReport(probe.channel_id, probe.kind, (), skipped=why)
    timeout = float(getattr(probe.settings, "request_timeout", 10.0))
    async with PhaseTimer(probe.channel_id, probe.kind) as timer:
        seen: set[tuple[str, str, int]] = set()
        for name, url in endpoints:
            if endpoint_of(url) not in seen:  # one service serving several roles: once
                seen.add(endpoint_of(url))
                await check_endpoint(timer, name, url, timeout=timeout)
    return timer.report()
