"""A run's id, its status, and whether the process that runs it is still alive.

*Run ids* are the run's start in Asia/Tokyo, marked ``JST``
(``20261205T030525JST-3fa2c1``): the same zone as every time an operator is
shown (scorecards, logs, the ``lock_busy`` message), so the id and the start
time printed beside it agree; the mark tells them from the older ids, which were
UTC without a mark (``20261204T180525-3fa2c1``). Both kinds are opaque keys to
the journal (``--run`` and ``runs/<run_id>/`` take either); :func:`run_id_time`
reads either.
"""

from __future__ import annotations

import os
import secrets
import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

__all__ = ["RUN_ID_ZONE", "TOKYO", "RunStatus", "new_run_id", "pid_alive", "run_id_time"]


class RunStatus:
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    INCOMPLETE = "incomplete"
    """The process died (SIGKILL, power) while running: found by the next run."""
    INTERRUPTED = "interrupted"
    """Stopped on purpose by SIGTERM/SIGINT (:mod:`drills.core.interrupt`): not a complete drill."""

    ENDED = (FINISHED, FAILED, INCOMPLETE, INTERRUPTED)


def pid_alive(pid: int | None) -> bool:
    """Is process *pid* (on this host) still there? A run ``running`` under a dead pid
    was killed and is ``incomplete``."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


TOKYO = ZoneInfo("Asia/Tokyo")
RUN_ID_ZONE = "JST"


def new_run_id(now: float | None = None) -> str:
    """A new run id: the start in Asia/Tokyo (as every time shown to people), marked ``JST``.

    >>> new_run_id(1796407525.0)[:-7]
    '20261205T030525JST'

    Ids written before were UTC without a mark (``20261204T180525-3fa2c1``); both are
    opaque keys to the journal, and :func:`run_id_time` reads either.
    """
    at = datetime.fromtimestamp(time.time() if now is None else now, TOKYO)
    return at.strftime("%Y%m%dT%H%M%S") + RUN_ID_ZONE + "-" + secrets.token_hex(3)


def run_id_time(run_id: str) -> datetime | None:
    """When *run_id* was made (aware, Asia/Tokyo), from either form of id; None if neither.

    >>> str(run_id_time("20261205T030525JST-3fa2c1")), str(run_id_time("20261204T180525-3fa2c1"))
    ('2026-12-05 03:05:25+09:00', '2026-12-05 03:05:25+09:00')
    """
    stamp = run_id.split("-", 1)[0]
    zone = TOKYO if stamp.endswith(RUN_ID_ZONE) else UTC
    try:
        at = datetime.strptime(stamp.removesuffix(RUN_ID_ZONE), "%Y%m%dT%H%M%S")
    except ValueError:
        return None
    return at.replace(tzinfo=zone).astimezone(TOKYO)
