"""What the harness hands the Locust processes: one JSON file, readable by its owner only.

The file holds the channel's endpoint *with its secrets revealed* (the token,
the SMTP password), so it never goes on a command line or into a log: it is
written ``0600`` into a private run folder, its path travels in the
environment variable :data:`ENV_VAR`, and the folder is removed after the
surge. Standard library only — the Locust side imports this module.

The Locust master (or the single local process) appends progress to the
``progress`` file as JSON lines, which the harness follows::

    {"event": "clock", "wall": 1764230100.1, "users": 16}   load users are up, step 0 begins
    {"event": "step", "index": 1, "rate": 20.0, "wall": …}  step 1 begins
    {"event": "tally", "worker": "…", "requests": 812, "failures": 3,
     "by_step": {"step 1": [400, 0], …}}               one per Locust process that sent load
    {"event": "finished", "reason": "completed" | "stopped", "wall": …}
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["ENV_VAR", "USER_CLASSES", "SurgeConfig", "append_progress", "read_progress"]

ENV_VAR = "TSUNAGARI_SURGE_CONFIG"

# Load kind → the Locust user class (in drills/surge/locustfiles.py) that carries it.
USER_CLASSES = {"webhook": "WebhookSurge", "smtp": "SmtpSurge", "twilio": "TwilioSurge"}


@dataclass(frozen=True)
class SurgeConfig:
    """Everything a Locust process of this surge needs (secrets included: never log it)."""

    load: str  # a key of USER_CLASSES
    endpoint: dict[str, Any]
    marker: str
    text: str
    plan: dict[str, Any]  # SurgePlan.to_dict()
    progress: str  # path of the progress file (JSON lines)

    def __repr__(self) -> str:  # the endpoint holds secrets
        return f"SurgeConfig(load={self.load!r}, progress={self.progress!r})"

    @property
    def user_class(self) -> str:
        return USER_CLASSES[self.load]

    def write(self, path: str | Path) -> None:
        """Write as JSON, created with mode 0600 (owner only)."""
        fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(asdict(self), fh, ensure_ascii=False)

    @classmethod
    def read(cls, path: str | Path) -> SurgeConfig:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(**data)


def append_progress(path: str | Path, event: dict[str, Any]) -> None:
    """Append one progress event (one line, flushed)."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(event, ensure_ascii=False) + "\n")


def read_progress(path: str | Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Complete progress events after byte *offset*, and the new offset."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            chunk = fh.read()
    except FileNotFoundError:
        return [], offset
    end = chunk.rfind(b"\n") + 1
    events = [json.loads(line) for line in chunk[:end].splitlines() if line.strip()]
    return events, offset + end
