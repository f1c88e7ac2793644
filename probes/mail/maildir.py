"""Confirming arrival in a Maildir on the same host (as cherti/mailexporter does).

The delivery agent writes a message into ``tmp/`` and renames it into
``new/``; the rename sets the file's ctime, so ctime is the moment the message
became visible in the mailbox. The observer scans ``new/`` and ``cur/``
every ``interval`` (cheap: a stat of each folder, a listing only when it
changed), matches the token with the same code as the IMAP observer (header,
else subject, else body), and reports the ctime as the arrival time — exact to
the file system's clock tick, whatever the scan interval.

How far ctime may lie *before* the real moment is checked when the observer
starts (renames of fresh scratch files in the Maildir's own ``tmp/``): exact on
some file systems; elsewhere a fresh inode gets the kernel's coarse clock, up
to one tick (1/HZ, at most 10 ms) early — on this project's machines mostly
microseconds, once in a few hundred renames 7.4 ms. The arrival is reported as
``min(ctime + lag, seen)`` — never before the truth — with ``lag`` + 1 ms (the
wall → monotonic conversion) as its bound.

A message first found in ``cur/`` was moved there by a mail client (a
read-write IMAP session), which reset its ctime; its arrival is then bracketed
like an IMAP look: after the previous scan, no later than the move.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from pathlib import Path

from probes.base import Clock, ObserverFault, Sighting
from probes.mail.observer import MailObserver, stop_task

__all__ = ["MaildirObserver"]

_READ_LIMIT = 64 * 1024
# A coarse ctime is the kernel's last tick: up to 1/HZ early (10 ms at HZ=100).
CTIME_RESOLUTION_S = 0.01
# Converting a wall time to the monotonic clock reads both clocks once each.
CONVERSION_S = 0.001


def _read_message(path: Path) -> bytes | None:
    """The first 64 KiB of a message file (header and the start of the body)."""
    try:
        with path.open("rb") as fh:
            return fh.read(_READ_LIMIT)
    except OSError:
        return None  # moved or deleted between listing and reading


def ctime_lag(folder: Path, samples: int = 16) -> float:
    """How far a file's ctime may lie before the moment it was set, on *folder*'s file system.

    Each sample renames a fresh file, as a delivery agent does (a fresh inode gets
    the coarse clock even where timestamps are otherwise fine-grained): 0.0 where
    ctime is exact; where it is not, one tick at the slowest kernel clock
    (:data:`CTIME_RESOLUTION_S`, HZ=100) or 1.5 × the worst lag measured if that is
    more; :data:`CTIME_RESOLUTION_S` also when *folder* is not writable.
    """
    worst = 0.0
    stem = f".tsunagari-clock.{os.getpid()}.{secrets.token_hex(4)}"
    try:
        for i in range(samples):
            fresh, moved = folder / f"{stem}.{i}", folder / f"{stem}.{i}.moved"
            fresh.touch()
            try:
                before = time.time()
                os.rename(fresh, moved)
                worst = max(worst, before - os.stat(moved).st_ctime)
            finally:
                fresh.unlink(missing_ok=True)
                moved.unlink(missing_ok=True)
    except OSError:
        return CTIME_RESOLUTION_S
    if worst <= 0:
        return 0.0
    # Coarse: one tick of the kernel's clock (HZ >= 100), or worse when measured worse
    # (a virtual machine's delayed ticks; seen here: mostly microseconds, up to 7.4 ms).
    return max(CTIME_RESOLUTION_S, worst * 1.5)


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
        self.ctime_lag = CTIME_RESOLUTION_S

    async def start(self) -> None:
        if not (self.path / "new").is_dir():
            raise ObserverFault(
                f"Maildir がありません / not a Maildir (no new/ folder): {self.path}",
                code="maildir",
            )
        if self._task is None:
            self.ctime_lag = ctime_lag(self.path / "tmp")
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
            self.sightings.fail(
                ObserverFault(f"Maildir 監視が停止 / observer stopped: {exc!r}", code="harness")
            )
            raise

    def scan(self) -> int:
        """Look once; returns how many drill messages were newly seen."""
        self.scans += 1
        found = 0
        now_wall = time.time()
        started = Clock.monotonic()
        previous = self._last_scan
        trouble: str | None = None
        for sub in ("new", "cur"):
            folder = self.path / sub
            try:
                mtime = os.stat(folder).st_mtime_ns
            except OSError as exc:
                trouble = f"Maildir を読めません / cannot read {folder}: {exc.strerror}"
                continue
            # A folder whose mtime is within the last second may change again
            # within the same clock tick: list it again to be sure.
            if self._mtimes.get(sub) == mtime and now_wall - mtime / 1e9 > 1.0:
                continue
            self._mtimes[sub] = mtime
            try:
                entries = list(os.scandir(folder))
            except OSError as exc:
                trouble = f"Maildir を読めません / cannot list {folder}: {exc.strerror}"
                self._mtimes.pop(sub, None)
                continue
            for entry in entries:
                # Maildir names change when flags are added (":2,S"); the unique part stays.
                unique = entry.name.split(":", 1)[0]
                if unique in self._seen:
                    continue
                self._seen.add(unique)
                found += self._consider(Path(entry.path), moved=sub == "cur", previous=previous)
        self.trouble = trouble
        if trouble is None:
            self._last_scan = started  # a complete look brackets the next arrivals
        return found

    def _consider(self, path: Path, *, moved: bool, previous: float | None) -> int:
        raw = _read_message(path)
        if raw is None:
            return 0
        tokens, matched_by = self.recognise(raw)
        if not tokens:
            return 0
        try:
            changed_wall = path.stat().st_ctime
        except OSError:
            return 0
        seen_at = Clock.monotonic()
        changed = Clock.monotonic_from_wall(changed_wall)
        # Never before the truth: a coarse ctime is up to one tick early.
        at = min(changed + self.ctime_lag, seen_at)
        for token in tokens:
            since = self._since(token)
            stored = at if since is None else max(at, since)  # not before the send began
            if moved:
                # ctime is the move into cur/; the arrival lies between the last scan and it.
                bound = self.bound(token, stored, previous) + CONVERSION_S
            else:
                lower = changed if since is None else max(changed, since)
                bound = stored - lower + CONVERSION_S
            extra: dict[str, object] = {
                "observer": "maildir",
                "matched_by": matched_by,
                "observed_lag_s": round(max(0.0, seen_at - stored), 6),
                "file": path.name,
            }
            if len(raw) < _READ_LIMIT:
                extra.update(self.content_extra(token, raw))
            self.record(token, Sighting(at=stored, error_bound_s=bound, extra=extra))
        if self.cleanup and any(self.ours(token) for token in tokens):
            with contextlib.suppress(OSError):
                path.unlink()
        return len(tokens)
