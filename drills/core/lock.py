"""The run lock: overlapping drill runs (cron firing again too soon) cannot collide.

    with RunLock("tsunagari-out/journal.sqlite.lock"):
        ...                       # a second process gets LockBusy at once

The lock is an OS file lock (``filelock``): it goes away with the process, so a
killed run never leaves a stale lock behind. Who holds it is written beside it
(``<lock>.holder``) so the refused run can say which process it was and since
when, in Asia/Tokyo (:func:`tokyo_time`). A lock that cannot be made at all (its
folder read-only, immutable or full) is :class:`LockUnusable`, never a bare
``OSError``. Within one
process the lock is re-entrant (``tsunagari run`` and its pytest plugin share it).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from filelock import FileLock, Timeout

from drills.core.errors import HarnessError, LockBusy

__all__ = ["LockUnusable", "RunLock", "holder_of", "tokyo_time"]

TOKYO = ZoneInfo("Asia/Tokyo")


class LockUnusable(HarnessError):
    """The lock file cannot be made (its folder is read-only, immutable, full): exit 3.
    ``str(exc)`` is ``"日本語 / English"`` and names the file."""


def tokyo_time(epoch: float) -> str:
    """*epoch* as people here read it: ``2026-12-05 03:05:25 JST`` (Asia/Tokyo, whatever the
    machine's zone).

    >>> tokyo_time(1796407525.0)
    '2026-12-05 03:05:25 JST'
    """
    return datetime.fromtimestamp(epoch, TOKYO).strftime("%Y-%m-%d %H:%M:%S JST")


# Locks held by this process: path → (lock, depth).
_HELD: dict[str, tuple[FileLock, int]] = {}


def holder_of(path: Path) -> dict[str, Any]:
    """What the holder wrote about itself (empty if unknown)."""
    try:
        data = json.loads(Path(str(path) + ".holder").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class RunLock:
    """An exclusive, non-blocking, per-path lock on drill runs."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).absolute()
        self.held = False

    def acquire(self) -> RunLock:
        key = str(self.path)
        if key in _HELD:
            lock, depth = _HELD[key]
            _HELD[key] = (lock, depth + 1)
            self.held = True
            return self
        lock = FileLock(key, timeout=0)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock.acquire(timeout=0)
        except Timeout:
            raise self._busy() from None
        except OSError as exc:
            raise self._unusable(exc) from None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": time.time(),
            "argv": sys.argv[:8],
        }
        try:
            Path(key + ".holder").write_text(json.dumps(info), encoding="utf-8")
        except OSError as exc:
            lock.release()
            raise self._unusable(exc) from None
        _HELD[key] = (lock, 1)
        self.held = True
        return self

    def _unusable(self, exc: OSError) -> LockUnusable:
        why = exc.strerror or type(exc).__name__
        return LockUnusable(
            f"実行ロック {self.path} を作れません（{why}）。フォルダが書き込めるか確かめてください。"
            f"訓練は実行していません / cannot make the run lock {self.path} ({why}); check that "
            "its folder can be written. No drill was run."
        )

    def _busy(self) -> LockBusy:
        who = holder_of(self.path)
        pid = who.get("pid", "?")
        since = who.get("started_at")
        at = tokyo_time(since) if isinstance(since, int | float) else "?"
        exc = LockBusy(
            f"別の訓練が実行中です（PID {pid}、{at} 開始）。今回は実行しません。ロック: {self.path}"
            f" / another drill run is in progress (pid {pid}, started {at}); this run did not start."
            f" Lock: {self.path}"
        )
        exc.holder = who  # type: ignore[attr-defined]
        return exc

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        key = str(self.path)
        lock, depth = _HELD[key]
        if depth > 1:
            _HELD[key] = (lock, depth - 1)
            return
        del _HELD[key]
        try:
            Path(key + ".holder").unlink(missing_ok=True)
        finally:
            lock.release()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
