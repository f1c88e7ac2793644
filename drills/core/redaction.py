"""The command line's output guard: stdout and stderr that never carry a secret.

``tsunagari`` runs every subcommand inside :func:`guarded_output`. Whatever is
written to ``sys.stdout``/``sys.stderr`` (the scorecard, pytest's report, JSON
log lines, a log handler's record, a traceback) passes through
:func:`probes.redact.redact` line by line, and the message of an exception
leaving the command is redacted before Python prints it.

A secret can only exist once :mod:`probes.redact` is loaded (``SecretRef.reveal``
registers every value there), so until then the guard writes straight through
and imports nothing: ``tsunagari --help`` and ``cron`` stay free of ``probes``.
"""

from __future__ import annotations

import contextlib
import sys

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: every command's start-up imports this module
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, TextIO

__all__ = ["GuardedStream", "guarded_output", "redact", "redact_exception"]


def redact(text: str) -> str:
    """:func:`probes.redact.redact`, without loading ``probes`` when no secret can exist."""
    module = sys.modules.get("probes.redact")
    return text if module is None else str(module.redact(text))


class GuardedStream:
    """A text stream that redacts once :mod:`probes.redact` exists (see the module doc)."""

    def __init__(self, stream: TextIO) -> None:
        self.wrapped = stream
        self._inner: Any = None  # a probes.redact.RedactingStream, once secrets can exist

    def _target(self) -> Any:
        if self._inner is None:
            redact = sys.modules.get("probes.redact")
            if redact is None:
                return self.wrapped
            self._inner = redact.RedactingStream(self.wrapped)
        return self._inner

    def write(self, text: str) -> int:
        return int(self._target().write(text))

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._target().flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


def redact_exception(exc: BaseException) -> None:
    """Redact the string arguments of *exc* and of every exception chained to it."""
    redact = sys.modules.get("probes.redact")
    seen: set[int] = set()
    current: BaseException | None = exc
    while redact is not None and current is not None and id(current) not in seen:
        seen.add(id(current))
        with contextlib.suppress(Exception):  # some exceptions refuse new args
            current.args = tuple(
                redact.redact(a) if isinstance(a, str) else a for a in current.args
            )
        current = current.__cause__ or current.__context__


@contextlib.contextmanager
def guarded_output() -> Iterator[None]:
    """Within: stdout and stderr are :class:`GuardedStream`; exceptions leave redacted."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = GuardedStream(sys.stdout), GuardedStream(sys.stderr)
    try:
        yield
    except BaseException as exc:
        redact_exception(exc)
        raise
    finally:
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, GuardedStream):
                with contextlib.suppress(Exception):
                    stream.flush()
        sys.stdout, sys.stderr = saved
