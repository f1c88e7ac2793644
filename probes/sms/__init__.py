"""The SMS channel (Twilio): the probe, status mapping, budget, callbacks, HTTP client.

``probes.sms:TwilioProbe`` is the ``tsunagari.channels`` entry point; it is loaded
on first use (PEP 562), so importing a part (``probes.sms.status``) loads no other.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from probes.sms.probe import TwilioProbe

__all__ = ["TwilioProbe"]

_HOME = {"TwilioProbe": "probes.sms.probe"}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
