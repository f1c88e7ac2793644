"""The mail channel: SMTP submission, TLS, IMAP and Maildir observers, the message.

``probes.mail:MailProbe`` is the ``tsunagari.channels`` entry point; it is loaded
on first use (PEP 562), so importing a part (``probes.mail.message``) loads no other.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from probes.mail.probe import MailProbe

__all__ = ["MailProbe"]

_HOME = {"MailProbe": "probes.mail.probe"}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
