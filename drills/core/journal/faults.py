"""Why a journal file cannot be used, in plain words: :class:`JournalUnusable`.

SQLite and the file system say ``unable to open database file``, ``file is not a
database`` or ``database or disk is full``; the operator reads which file, and
what to do about it, in Japanese then English::

    記録 out/journal.sqlite を使えません: ディスクの空きがありません /
    journal out/journal.sqlite cannot be used: the disk is full (no space left on the device)

Every command that meets one exits 3 (a harness failure), with no traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

from drills.core.errors import HarnessError

__all__ = ["JournalUnusable"]


class JournalUnusable(HarnessError):
    """The journal file cannot be opened, read or written (a folder, not SQLite, read-only,
    the disk full). ``str(exc)`` is ``"日本語 / English"`` and names the file; exit 3."""

    def __init__(self, path: str, why_ja: str, why_en: str) -> None:
        self.path = path
        super().__init__(
            f"記録 {path} を使えません: {why_ja} / journal {path} cannot be used: {why_en}"
        )

    @classmethod
    def from_error(
        cls, path: str | Path, exc: BaseException, writing: bool = True
    ) -> JournalUnusable:
        """Plain words for what SQLite or the file system said about *path*."""
        return _unusable(str(path), exc, writing)


def _read_only_place(path: str) -> bool:
    """Is *path* (or, when it does not exist, its folder) on a read-only file system or
    not writable by this process?"""
    place = Path(path) if Path(path).exists() else Path(path).parent
    try:
        if os.statvfs(place).f_flag & os.ST_RDONLY:
            return True
    except OSError:
        return False
    return place.exists() and not os.access(place, os.W_OK)


def _unusable(path: str, exc: BaseException, writing: bool) -> JournalUnusable:
    text = str(exc)
    low = text.lower()
    if isinstance(exc, IsADirectoryError) or Path(path).is_dir():
        return JournalUnusable(path, "ファイルではなくフォルダです", "it is a folder, not a file")
    if "not a database" in low or "malformed" in low or "file is encrypted" in low:
        return JournalUnusable(
            path,
            "SQLite の記録ファイルではないか、壊れています",
            "it is not a SQLite journal, or it is damaged",
        )
    if "full" in low or getattr(exc, "errno", None) == 28:
        return JournalUnusable(
            path, "ディスクの空きがありません", "the disk is full (no space left on the device)"
        )
    if (
        "readonly" in low
        or "read-only" in low
        or isinstance(exc, PermissionError)
        or (writing and _read_only_place(path))
    ):
        return JournalUnusable(
            path,
            "書き込めません（読み取り専用か権限がありません）",
            "it cannot be written (read-only or no permission)",
        )
    if "unable to open" in low or isinstance(exc, OSError):
        return JournalUnusable(
            path,
            "開けません（フォルダがないか権限がありません）",
            "it cannot be opened (no such folder, or no permission)",
        )
    verb_ja, verb_en = (
        ("書き込めません", "cannot be written") if writing else ("読めません", "cannot be read")
    )
    return JournalUnusable(path, f"{verb_ja}（{text}）", f"{verb_en} ({text})")
