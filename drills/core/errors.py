"""Errors of the drill harness.

::

    TsunagariError
    ├── RegistryError        (ValueError)       the registry file is wrong; names file/line/field
    ├── ScenarioError        (ValueError)       a scenario asks for something impossible
    ├── DrillSafetyError     (PermissionError)  a live send without --live, a cap exceeded
    ├── LockBusy             (BlockingIOError)  another drill holds the run lock
    ├── JournalTooNew        (ValueError)       the journal was written by a newer tsunagari
    └── HarnessError         (RuntimeError)     the harness itself failed

Channel faults are not here: they are ``probes.base.ChannelFault`` and end up
as outcomes (``lost``/``rejected``), not exceptions of the harness.
"""

from __future__ import annotations

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:  # the record lives apart: --help does not pay for dataclasses
    from drills.core.problem import Problem

__all__ = [
    "SHOWN_PROBLEMS",
    "DrillSafetyError",
    "HarnessError",
    "JournalTooNew",
    "LockBusy",
    "RegistryError",
    "ScenarioError",
    "TsunagariError",
]

SHOWN_PROBLEMS = 50
"""How many registry problems are printed before "… and N more"."""


class TsunagariError(Exception):
    """Root of the harness's own errors."""


class RegistryError(TsunagariError, ValueError):
    """The registry is invalid; ``problems`` lists every problem found.

    Every problem is kept, but at most :data:`SHOWN_PROBLEMS` are rendered, then
    one line saying how many more there are (a mangled file can have thousands).

    >>> from drills.core.problem import Problem
    >>> many = RegistryError([Problem("r.yaml", n, "x", "誤り", "wrong") for n in range(1, 53)])
    >>> many.lines("en")[-1]
    '… and 2 more problem(s) (52 in all; fix the first ones and check again)'
    """

    def __init__(self, problems: list[Problem], lang: str = "en") -> None:
        self.problems = problems
        super().__init__("\n".join(self.lines(lang)))

    def lines(self, lang: str = "ja", limit: int | None = None) -> list[str]:
        """The first *limit* problems (default :data:`SHOWN_PROBLEMS`), then "… and N more"."""
        limit = SHOWN_PROBLEMS if limit is None else limit
        out = [p.render(lang) for p in self.problems[:limit]]
        more = len(self.problems) - len(out)
        if more > 0:
            total = len(self.problems)
            out.append(
                f"… ほか {more} 件（全 {total} 件。最初の誤りを直してから再度確認してください）"
                if lang == "ja"
                else f"… and {more} more problem(s) ({total} in all; fix the first ones and "
                "check again)"
            )
        return out

    def render(self, lang: str = "ja", limit: int | None = None) -> str:
        return "\n".join(self.lines(lang, limit))


class ScenarioError(TsunagariError, ValueError):
    """A scenario step cannot be run as written."""


class DrillSafetyError(TsunagariError, PermissionError):
    """Refused for drill safety (live channel without --live, cap exceeded)."""


class LockBusy(TsunagariError, BlockingIOError):
    """Another drill run holds the lock."""


class HarnessError(TsunagariError, RuntimeError):
    """The harness failed (not the channel)."""


class JournalTooNew(TsunagariError, ValueError):
    """The journal's schema version is newer than this code reads.

    ``str(exc)`` is ``"日本語 / English"`` (so ``Text.pick`` chooses a half);
    :meth:`render` gives one language. The CLI treats it as a usage error (exit 2).
    """

    def __init__(self, path: str, found: int, supported: int) -> None:
        self.path = path
        self.found = found
        self.supported = supported
        super().__init__(f"{self.render('ja')} / {self.render('en')}")

    def render(self, lang: str = "ja") -> str:
        if lang == "ja":
            return (
                f"記録 {self.path} はスキーマ v{self.found} で書かれています。この tsunagari が"
                f"読めるのは v{self.supported} までです。tsunagari を更新してから開いてください"
                "（記録は変更していません）"
            )
        return (
            f"journal {self.path} has schema v{self.found}; this tsunagari reads up to "
            f"v{self.supported}. Upgrade tsunagari to open it (the journal was not changed)"
        )
