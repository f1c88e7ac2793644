"""Preflight steps (``drill.preflight()``): each channel checked without sending
(:class:`PreflightEvent`, :class:`PreflightChannel`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from drills.core.events.fields import _Event, _Fields, _version


@dataclass(frozen=True)
class PreflightChannel:
    """One channel's preflight in a ``drill.preflight()`` step."""

    channel: str  # target key, "131211/mail"
    kind: str
    ok: bool
    skipped: bool = False
    phase: str | None = None  # the failed phase, "imap.auth"
    phase_class: str | None = None  # its class: dns, connect, tls, auth, read, account
    reason: str = ""  # "日本語 / English", empty when ok
    elapsed_s: float = 0.0
    cert_days_left: float | None = None  # the soonest-expiring certificate seen

    def to_data(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "kind": self.kind,
            "ok": self.ok,
            "skipped": self.skipped,
            "phase": self.phase,
            "phase_class": self.phase_class,
            "reason": self.reason,
            "elapsed_s": self.elapsed_s,
            "cert_days_left": self.cert_days_left,
        }

    @classmethod
    def _read(cls, f: _Fields) -> Self:
        return cls(
            channel=f.text("channel"),
            kind=f.text("kind"),
            ok=f.flag("ok"),
            skipped=f.flag("skipped", False),
            phase=f.opt_text("phase"),
            phase_class=f.opt_text("phase_class"),
            reason=f.text("reason", ""),
            elapsed_s=f.number("elapsed_s", 0.0),
            cert_days_left=f.opt_number("cert_days_left"),
        )


@dataclass(frozen=True, kw_only=True)
class PreflightEvent(_Event):
    """A ``drill.preflight()`` step: every channel checked without sending, and whether
    the drill stopped because one cannot work."""

    kind: ClassVar[str] = "preflight"

    channels: tuple[PreflightChannel, ...] = ()
    stopped: bool = False

    @property
    def failing(self) -> tuple[PreflightChannel, ...]:
        return tuple(c for c in self.channels if not c.ok)

    def to_data(self) -> dict[str, Any]:
        return {
            **self._head(),
            "channels": [c.to_data() for c in self.channels],
            "stopped": self.stopped,
            **self._tail(),
        }

    @classmethod
    def from_data(cls, data: Any) -> Self:
        _version(cls.kind, data)
        f = _Fields(cls.kind, data)
        return cls(
            **cls._common(f),
            channels=tuple(PreflightChannel._read(c) for c in f.objects("channels")),
            stopped=f.flag("stopped"),
        )
