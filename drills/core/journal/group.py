"""Group commit: a drill's deliveries written a few milliseconds' worth at a time.

One transaction per delivery costs a commit (and a WAL frame) each; at
thousands of deliveries a second that is the harness's own work. The runner
hands every completed delivery to :class:`GroupCommit` and *awaits* it: the
deliveries that complete within ``window_s`` (5 ms) — or the first
``max_rows`` (256) of them — are written in one transaction, and only then
does each waiting delivery go on (into the step result, the live progress,
the metrics taps).

The crash guarantee, precisely: **every delivery is committed within
``window_s`` of completing, and nothing about a delivery is shown, counted or
passed on before it is committed.** A SIGKILL can lose at most the deliveries
that completed in the last ``window_s`` and were never acknowledged — exactly
those nobody was told about (tests/core/test_group_commit.py kills a drill
between groups and checks).

    commits = GroupCommit(journal)
    await commits.commit(delivery)      # returns once its group is committed
    commits.flush()                     # write whatever waits (finish, shutdown)
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from drills.core.delivery import Delivery

__all__ = ["MAX_ROWS", "WINDOW_S", "GroupCommit"]

WINDOW_S = 0.005  # a delivery waits at most this long for its group's commit
MAX_ROWS = 256  # a group this big is written at once


class GroupCommit:
    """Collects deliveries and writes them in one transaction per window (see the module)."""

    def __init__(
        self, journal: _Writes, *, window_s: float = WINDOW_S, max_rows: int = MAX_ROWS
    ) -> None:
        self.journal = journal
        self.window_s = window_s
        self.max_rows = max_rows
        self.groups = 0  # transactions written
        self.rows = 0  # deliveries written
        self._pending: list[Delivery] = []
        # One future per waiting caller (a cancelled caller cancels only its own).
        self._waiters: list[asyncio.Future[None]] = []
        self._timer: asyncio.TimerHandle | None = None

    async def commit(self, delivery: Delivery) -> None:
        """Queue *delivery*; return once the transaction holding it is committed.

        A failed write (a full disk) is raised to every delivery of the group. A
        caller cancelled while waiting does not take its delivery back: it is
        written with its group.
        """
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._pending.append(delivery)
        self._waiters.append(done)
        if len(self._pending) >= self.max_rows or self.window_s <= 0:
            self.flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.window_s, self.flush)
        await done

    def flush(self) -> None:
        """Write every waiting delivery now, in one transaction, and wake their callers."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        rows, self._pending = self._pending, []
        waiters, self._waiters = self._waiters, []
        if not rows:
            return
        try:
            self.journal.record_many(rows)
        except BaseException as exc:
            for done in waiters:
                if not done.done():
                    done.set_exception(exc)
                    done.exception()  # retrieved: a caller gone meanwhile is no error
            if not isinstance(exc, Exception):
                raise
            return
        self.groups += 1
        self.rows += len(rows)
        for done in waiters:
            if not done.done():  # (a caller cancelled meanwhile: its own future only)
                done.set_result(None)


class _Writes(Protocol):
    """What :class:`GroupCommit` needs of a journal (:meth:`Journal.record_many`)."""

    def record_many(self, deliveries: list[Delivery]) -> None: ...
