"""What a chat service's answer means, in the pieces every chat kind shares.

- :func:`both`: a reason as probes phrase it (Japanese first, then English).
- :func:`retry_after_seconds`: a ``Retry-After`` header in either of its forms.
- :func:`foreign_answer`: a 2xx that is not the service's own answer (an HTML page
  from a proxy, a captive portal, a maintenance page): the message did not reach it.
- :class:`AnswerCutOff`: the service began to answer, then the connection was lost
  (whether it took the message is unknown; :class:`probes.chat.base.ChatProbe` asks
  its observer).

Pure functions (no I/O); :mod:`probes.chat.base` re-exports them.
"""

from __future__ import annotations

import json
from typing import Any

from probes.base import ChannelUnreachable, parse_retry_after

__all__ = ["AnswerCutOff", "both", "foreign_answer", "retry_after_seconds"]


def retry_after_seconds(headers: Any, default: float = 1.0, *, now: float | None = None) -> float:
    """Seconds to wait from a Retry-After header (seconds or HTTP-date form), else *default*.

    RFC 9110 §10.2.3 allows both forms; a date is counted from *now* (wall clock).

    >>> retry_after_seconds({"Retry-After": "3"}), retry_after_seconds({}, 0.5)
    (3.0, 0.5)
    >>> retry_after_seconds({"Retry-After": "Sun, 06 Nov 1994 08:49:39 GMT"}, now=784111775.0)
    4.0
    >>> retry_after_seconds({"Retry-After": "soon"}, 2.0)
    2.0
    """
    value = headers.get("Retry-After") if headers is not None else None
    seconds = parse_retry_after(None if value is None else str(value), now)
    return default if seconds is None else seconds


def both(ja: str, en: str, detail: str = "") -> str:
    """A reason as probes phrase it: Japanese first, English after, the service's detail in both.

    Reports show one half (``drills.core.i18n.Text.pick`` splits at the first " / ").

    >>> both("認証が拒否されました", "credentials refused", "HTTP 401: invalid_auth")
    'HTTP 401: invalid_auth（認証が拒否されました） / HTTP 401: invalid_auth (credentials refused)'
    """
    if not detail:
        return f"{ja} / {en}"
    detail = detail.replace(" / ", " - ")
    return f"{detail}（{ja}） / {detail} ({en})"


class AnswerCutOff(ChannelUnreachable):
    """The service began to answer, then the connection was lost: taken or not, unknown."""


def foreign_answer(
    service: str, status: int, text: str, headers: Any, *, json_body: bool = True
) -> ChannelUnreachable | None:
    """A 2xx that is not *service*'s own answer (None when it is): an HTML page, or not JSON.

    What a proxy, a captive portal or a maintenance page answers in the service's
    place: the message did not reach the service, whatever the status says.

    >>> foreign_answer("Slack", 200, "<html>…</html>", {"Content-Type": "text/html"}).reason
    'HTTP 200 text/html: <html>…</html>（Slack 以外からの応答です。JSON ではありません） / HTTP 200 text/html: <html>…</html> (the answer was not from Slack: not JSON)'
    >>> foreign_answer("Slack", 200, '{"ok": true}', {"Content-Type": "application/json"}) is None
    True
    """
    ctype = str((headers or {}).get("Content-Type") or "").split(";")[0].strip().lower()
    foreign = ctype == "text/html"
    if not foreign and json_body:
        try:
            json.loads(text)
        except ValueError:
            foreign = True
    if not foreign:
        return None
    snippet = " ".join(text.split())[:80]
    return ChannelUnreachable(
        both(
            f"{service} 以外からの応答です。JSON ではありません",
            f"the answer was not from {service}: not JSON",
            f"HTTP {status} {ctype or 'no Content-Type'}: {snippet}",
        ),
        code="not_json",
    )
