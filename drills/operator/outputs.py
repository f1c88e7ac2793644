"""What a run leaves in its output folder: one writer for ``tsunagari demo`` and ``tsunagari run``.

    outputs = write_run_outputs(journal, run_id, registry, out_dir, lang="ja")
    # out_dir/scorecard.json, out_dir/scorecard.html, out_dir/metrics.prom

The scorecard is built once and every file is written from it or from the
journal. A file that cannot be written is named in ``outputs.problems`` and
the others are still written; only ``scorecard.json`` (the run's record for
people) is allowed to raise. No file is ever left half-written (a full disk, a
folder that turned read-only): each is written to a temporary file and renamed,
and what a failed writer left is removed.
"""

from __future__ import annotations

import contextlib
import glob
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drills.core.journal import Journal
    from drills.core.registry import Registry

__all__ = ["RUN_FILES", "RunOutputs", "write_run_outputs"]

RUN_FILES = ("scorecard.json", "scorecard.html", "metrics.prom")
"""The files :func:`write_run_outputs` writes, in order."""


@dataclass
class RunOutputs:
    """The run's scorecard, the files written and what could not be written."""

    scorecard: dict[str, Any]
    written: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def write_run_outputs(
    journal: Journal,
    run_id: str,
    registry: Registry | None,
    out_dir: Path,
    *,
    lang: str = "ja",
) -> RunOutputs:
    """Write run *run_id*'s :data:`RUN_FILES` into *out_dir* (created if missing)."""
    from drills.metrics.push import write_textfile
    from drills.reporting.html import write_html
    from drills.reporting.scorecard import build_scorecard, write_json
    from probes.base import DEFAULT_MARKER

    out_dir.mkdir(parents=True, exist_ok=True)
    card = build_scorecard(journal, run_id, registry)
    done = RunOutputs(card)
    try:
        write_json(card, out_dir / "scorecard.json")
    except BaseException:
        _forget_partial(out_dir / "scorecard.json")
        raise
    done.written.append(out_dir / "scorecard.json")
    marker = registry.marker if registry is not None else DEFAULT_MARKER
    writers: dict[str, Callable[[Path], object]] = {
        "scorecard.html": lambda path: write_html(card, path, lang, marker),
        "metrics.prom": lambda path: write_textfile(journal, run_id, path, registry),
    }
    for name, write in writers.items():
        try:
            write(out_dir / name)
        except Exception as exc:  # one broken file must not lose the others
            _forget_partial(out_dir / name)
            done.problems.append(f"{name}: {type(exc).__name__}: {exc}")
        else:
            done.written.append(out_dir / name)
    return done


def _forget_partial(path: Path) -> None:
    """Remove what a failed writer left beside *path* (``scorecard.json.tmp``,
    ``metrics.prom.<pid>.<thread>``): every writer writes a temporary file and renames
    it, so *path* itself is either the old file or the new one, never half of one."""
    for leftover in path.parent.glob(glob.escape(path.name) + ".*"):
        with contextlib.suppress(OSError):
            leftover.unlink()
