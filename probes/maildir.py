"""Confirming arrival in a Maildir on the same host (as cherti/mailexporter does).

The delivery agent writes a message into ``tmp/`` and renames it into
``new/``; the rename sets the file's ctime, so ctime is the moment the message
became visible in the mailbox. The observer scans ``new/`` and ``cur/``
every ``interval`` (cheap: a stat of each folder, a listing only when it
changed), matches the token header with the same code as the IMAP observer,
and reports the ctime as the arrival time — exact to the file system's clock
tick, whatever the scan interval.

A message first found in ``cur/`` was moved there by a mail client (a
read-write IMAP session), which reset its ctime; its arrival is then bracketed
like an IMAP look: after the previous scan, no later than the move.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

from probes.base import Clock, ObserverFault, Sighting
from probes.mail_observer import MailObserver, stop_task

__all__ = ["MaildirObserver"]

_HEADER_LIMIT = 64 * 1024
# ctime comes from the kernel's coarse clock (one tick, up to 4 ms at HZ=250).
CTIME_RESOLUTION_S = 0.005


def _read_head(path: Path) -> bytes | None:
    """The header block of a message file (up to the first empty line)."""
    try:
        with path.open("rb") as fh:
            data = fh.read(_HEADER_LIMIT)
    except OSError:
        return None  # moved or deleted between listing and reading
    for sep in (b"\r\n\r\n", b"\n\n"):
        end = data.find(sep)
        if end >= 0:
            return data[: end + len(sep)]
    return data


class MaildirObserver(MailObserver):
    """Watches one Maildir for every probe delivering into it."""

    def __init__(self, path: str | Path, *, interval: float = 0.05, cleanup: bool = False) -> None:
        super().__init__()
        self.path = Path(path)
        self.interval = interval
        self.cleanup = cleanup
        self.scans = 0
        self._seen: set[str] = set()
        self._mtimes: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._last_scan: float | None = None

    async def start(self) -> None:
        if not (self.path / "new").is_dir():
            raise ObserverFault(
                f"Maildir がありません / not a Maildir (no new/ folder): {self.path}",
                code="maildir",
            )
        if self._task is None:
            # Messages already there cannot carry tokens of this drill: skip them.
            for sub in ("new", "cur"):
                with contextlib.suppress(OSError):
                    self._seen.update(n.split(":", 1)[0] for n in os.listdir(self.path / sub))
            self._last_scan = Clock.monotonic()
            self._task = asyncio.create_task(self._run(), name=f"maildir-observer {self.path}")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await stop_task(task)

    async def _run(self) -> None:
        try:
            while True:
                self.scan()
                await asyncio.sleep(self.interval)
        except Exception as exc:  # a bug here must not leave probes waiting for nothing
            self.sightings.fail(ObserverFault(f"Maildir 監視が停止 / observer stopped: {exc!r}"))
            raise

    def scan(self) -> int:
        """Look once; returns how many drill messages were newly seen."""
        self.scans += 1
        found = 0
        now_wall = time.time()
        started = Clock.monotonic()
        previous, self._last_scan = self._last_scan, started
        for sub in ("new", "cur"):
            folder = self.path / sub
            try:
                mtime = os.stat(folder).st_mtime_ns
            except OSError:
                continue
            # A folder whose mtime is within the last second may change again
            # within the same clock tick: list it again to be sure.
            if self._mtimes.get(sub) == mtime and now_wall - mtime / 1e9 > 1.0:
                continue
            self._mtimes[sub] = mtime
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                # Maildir names change when flags are added (":2,S"); the unique part stays.
                unique = entry.name.split(":", 1)[0]
                if unique in self._seen:
                    continue
                self._seen.add(unique)
                found += self._consider(Path(entry.path), moved=sub == "cur", previous=previous)
        return found

    def _consider(self, path: Path, *, moved: bool, previous: float | None) -> int:
        head = _read_head(path)
        if head is None:
            return 0
        token = self.recognise(head)
        if token is None:
            return 0
        try:
            changed_wall = path.stat().st_ctime
        except OSError:
            return 0
        seen_at = Clock.monotonic()
        stored = min(Clock.monotonic_from_wall(changed_wall), seen_at)
        since = self._since(token)
        if since is not None:
            stored = max(stored, since)  # never before the send began (clock skew guard)
        if moved:
            # ctime is the move into cur/; the arrival lies between the last scan and it.
            bound = self.bound(token, stored, previous)
        else:
            bound = CTIME_RESOLUTION_S
        extra: dict[str, object] = {
            "observer": "maildir",
            "observed_lag_s": round(max(0.0, seen_at - stored), 6),
            "file": path.name,
        }
        if token in self.expected:
            with contextlib.suppress(OSError):
                extra.update(self.content_extra(token, path.read_bytes()))
        self.record(token, Sighting(at=stored, error_bound_s=bound, extra=extra))
        if self.cleanup:
            with contextlib.suppress(OSError):
                path.unlink()
        return 1
