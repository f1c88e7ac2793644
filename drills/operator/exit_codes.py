"""How drill outcomes appear in the pytest report, and which exit code they mean.

Every failed report of a drill test gets a category in ``user_properties``
(``("tsunagari", {...})``): ``missed`` (a requirement missed → exit 1),
``mistake`` (the scenario, registry or options are wrong → 2) or ``harness``
(the harness failed → 3). Operator mistakes and missed requirements are shown
as plain text naming the scenario file and line — no traceback.

The exit codes of ``tsunagari run`` and ``tsunagari demo`` (:data:`EXIT_CODES`)::

    0    all requirements met
    1    a requirement missed
    2    usage, registry or scenario error
    3    harness failure: also a journal, lock or output folder that cannot be
         used (a folder, not SQLite, read-only, the disk full) — said in one
         bilingual line, nothing half-written
    4    another drill holds the run lock (the message names its pid and start,
         Asia/Tokyo)
    130  stopped by SIGINT  (128 + 2)
    143  stopped by SIGTERM (128 + 15)
         (also during an unannounced run's wait, ``--unannounced-window``: the drill was
         called off before it began, nothing sent, nothing journalled)

130 and 143 follow the shell's "128 + signal" convention on purpose: a timer,
cron wrapper or ``systemctl stop`` sees that the drill was stopped, not that it
passed or missed, and the process behaves as if the signal had ended it — but
on purpose: the runs are recorded ``interrupted``, the messages in flight are
watched for up to 10 s (:data:`drills.core.interrupt.GRACE_S`) or recorded as
``error`` (sent, fate unknown), and the summary, ``run_finished`` record and
scorecards are written. A second signal cuts the wait short.

Only a signal that stopped something gives 130/143: one that arrives after every
drill had finished — every run already recorded ``finished`` or ``failed``, no
test kept from running, e.g. while scorecards and metrics are written — leaves
the runs as recorded and the exit code is the drills' own (0, 1, 2 or 3); ``run``
logs ``signal_after_drills`` instead of ``run_interrupted``, ``summary.json`` has
``"interrupted": null`` and ``"signal"``, and ``demo`` says so on stderr. A cron
wrapper or timer that saw 143 would take a complete drill for a stopped one and
might run it again, messaging every member of staff twice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from drills.core.errors import DrillSafetyError, HarnessError, RegistryError, ScenarioError
from drills.core.i18n import Text
from drills.core.requirements import (
    HarnessFault,
    RequirementMissed,
    ScenarioMistake,
    Status,
    Verdict,
    render_details,
    render_summary,
)
from drills.core.taxonomy import main_failure

__all__ = [
    "CATEGORY_EXIT",
    "EXIT_CODES",
    "Classified",
    "ItemState",
    "SubtestReporter",
    "classify",
    "exit_code",
    "tag",
]

CATEGORY_EXIT = {"missed": 1, "mistake": 2, "harness": 3}
EXIT_CODES = {
    0: "ok",
    1: "missed",
    2: "usage",
    3: "harness",
    4: "locked",
    130: "interrupted (SIGINT)",
    143: "interrupted (SIGTERM)",
}
_HARNESS_DIRS = tuple(
    os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), d)
    + os.sep
    for d in ("drills", "probes")
)


@dataclass
class ItemState:
    """Per test: the verdicts reported so far, and whether a subtest is open."""

    verdicts: list[Verdict] = field(default_factory=list)
    where: str | None = None
    in_subtest: bool = False

    @property
    def bad(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.met]


class SubtestReporter:
    """Reports each municipality's verdict as a pytest subtest."""

    def __init__(self, subtests: Any, lang: str, state: ItemState) -> None:
        self.subtests, self.lang, self.state = subtests, lang, state

    def report(self, verdicts: list[Verdict], where: str | None, step: str) -> None:
        for v in verdicts:
            self.state.in_subtest = True
            try:
                with self.subtests.test(msg=f"{v.label(self.lang)} {step}".strip()):
                    if v.status is Status.HARNESS:
                        raise HarnessFault([v], where, self.lang)
                    if v.status is Status.MISSED:
                        raise RequirementMissed([v], where, self.lang)
            finally:
                self.state.in_subtest = False
        self.state.verdicts += verdicts
        if any(not v.met for v in verdicts) and self.state.where is None:
            self.state.where = where


@dataclass(frozen=True)
class Classified:
    category: str
    text: str | None  # replacement for the traceback; None keeps pytest's own
    details: dict[str, Any]


def _item_where(item: Any) -> str:
    path, line, _ = item.location
    return f"{path}:{(line or 0) + 1}"


def _tb_where(excinfo: Any, item: Any) -> str:
    """The last line of the scenario file in the traceback, else the test's def line."""
    target = str(item.path)
    found = None
    for entry in excinfo.traceback:
        if str(entry.path) == target:
            found = entry.lineno + 1
    if found is None:
        return _item_where(item)
    return f"{item.location[0]}:{found}"


def _verdict_details(v: Verdict) -> dict[str, Any]:
    """The JSON of one verdict (``requirement_missed``): its rows, each with stage and cause.

    ``stage``/``cause`` at the top are the main ones among the rows
    (:func:`drills.core.taxonomy.main_failure`: most rows, a tie to the earlier stage).
    """
    main = main_failure((r.stage, r.cause) for r in v.rows if r.stage)
    return {
        "municipality": v.code,
        "name": v.name,
        "status": v.status.value,
        "summary": v.summary_en,
        "stage": main[0] if main else None,
        "cause": main[1] if main else None,
        "rows": [
            {
                "channel": r.channel,
                "kind": r.kind,
                "outcome": r.outcome,
                "reason": r.reason,
                **({"stage": r.stage, "cause": r.cause} if r.stage else {}),
            }
            for r in v.rows
        ],
    }


def classify(excinfo: Any, item: Any, lang: str) -> Classified:
    """Category, clean text and structured details of a drill test's exception."""
    exc = excinfo.value
    t = Text(lang)
    if isinstance(exc, RequirementMissed | HarnessFault):
        category = "missed" if isinstance(exc, RequirementMissed) else "harness"
        where = exc.where or _tb_where(excinfo, item)
        text = render_details(exc.verdicts, lang, where)
        details = _verdict_details(exc.verdicts[0]) if len(exc.verdicts) == 1 else {}
        return Classified(category, text, {"where": where, **details})
    if isinstance(exc, ScenarioMistake):
        exc.where = exc.where or _tb_where(excinfo, item)
        return Classified("mistake", exc.render(lang), {"where": exc.where, "message": exc.en})
    if isinstance(exc, RegistryError):
        where = _item_where(item)
        head = t(
            f"レジストリに誤りがあります（{len(exc.problems)} 件）:",
            f"the registry has {len(exc.problems)} problem(s):",
        )
        lines = [f"{where}: {head}", *("    " + line for line in exc.lines(lang))]
        return Classified(
            "mistake", "\n".join(lines), {"where": where, "message": exc.render("en")}
        )
    if isinstance(exc, DrillSafetyError | ScenarioError):
        where = _tb_where(excinfo, item)
        return Classified(
            "mistake", f"{where}: {t.pick(str(exc))}", {"where": where, "message": str(exc)}
        )
    if isinstance(exc, HarnessError):  # the journal or lock cannot be used: said plainly
        where = _tb_where(excinfo, item)
        return Classified(
            "harness", f"{where}: {t.pick(str(exc))}", {"where": where, "message": str(exc)}
        )
    where = _tb_where(excinfo, item)
    if isinstance(exc, AssertionError) or excinfo.typename == "Failed":
        return Classified(
            "missed",
            None,
            {"where": where, "message": str(exc).splitlines()[0] if str(exc) else ""},
        )
    last = str(excinfo.traceback[-1].path) if len(excinfo.traceback) else ""
    in_scenario = last == str(item.path)
    category = "mistake" if in_scenario else "harness"
    if not in_scenario and not last.startswith(_HARNESS_DIRS) and "site-packages" not in last:
        category = "mistake"  # raised in the operator's own helper code
    return Classified(category, None, {"where": where, "message": f"{type(exc).__name__}: {exc}"})


def parent_failure(state: ItemState, lang: str) -> Classified:
    """The test's own failure when some of its subtests (municipalities) failed."""
    bad = state.bad
    category = "harness" if any(v.status is Status.HARNESS for v in bad) else "missed"
    return Classified(
        category,
        render_summary(bad, lang, state.where),
        {
            "where": state.where,
            # could not be judged (observer/harness fault) is never among those that missed
            "municipalities": [v.code for v in bad if v.status is Status.MISSED],
            "unjudged": [v.code for v in bad if v.status is Status.HARNESS],
        },
    )


def tag(report: Any, c: Classified) -> None:
    # A new list: a report shares the item's list, and subtests must not inherit tags.
    report.user_properties = [
        *report.user_properties,
        ("tsunagari", {"category": c.category, **c.details}),
    ]


def exit_code(
    pytest_status: int, categories: set[str], collection_failed: bool, locked: bool
) -> int:
    """The ``tsunagari run`` exit code.

    4 locked · 2 usage, registry or scenario mistake · 3 harness failure · 1 requirement missed · 0 ok.

    >>> exit_code(1, {"missed"}, False, False), exit_code(1, {"missed", "mistake"}, False, False)
    (1, 2)
    >>> exit_code(0, set(), False, False), exit_code(5, set(), False, False), exit_code(2, set(), False, False)
    (0, 2, 3)
    """
    if locked:
        return 4
    if "mistake" in categories or collection_failed or pytest_status in (4, 5):
        return 2
    if "harness" in categories or pytest_status in (2, 3):
        return 3
    if "missed" in categories:
        return 1
    return 0 if pytest_status == 0 else 3
