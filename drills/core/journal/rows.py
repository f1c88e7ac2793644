"""A delivery as a ``deliveries`` row: every column, with no secret in it.

Every string of the row (``extra`` too, as JSON) goes through :mod:`probes.redact`
before it is written. Most rows hold no secret at all, so the check is made once
per row on all its strings together, and only a row where something is found is
redacted string by string — the very result :func:`probes.redact.redact_data`
gives, at a fraction of the cost (a few thousand rows a second at scale):

- any secret inside one string is inside the joined strings too (``redact``
  finds a value at any offset), and a whole-word value stays a whole word (the
  separator is neither a letter nor a digit);
- ``extra`` as JSON holds each of its strings verbatim when the JSON has no
  backslash (nothing needed escaping), between quotes.

    >>> from probes.redact import register
    >>> register("s3cret-value-xyz")
    >>> _extra_json({"detail": "echo s3cret-value-xyz", "n": 1})
    '{"detail": "echo ***", "n": 1}'
"""

from __future__ import annotations

import enum
import json
import operator
from typing import Any

from drills.core.delivery import Delivery
from drills.core.journal.schema import DELIVERY_COLUMNS
from probes.redact import redact, redact_data

__all__ = ["delivery_row"]

_SEP = "\x1f"  # between a row's strings when they are checked together
_COLUMNS = operator.attrgetter(*DELIVERY_COLUMNS)
_EXTRA = DELIVERY_COLUMNS.index("extra")


def _extra_json(extra: Any, text: str | None = None) -> str:
    """``extra`` as JSON with every string (keys too) redacted (*text*: its JSON, if made)."""
    if text is None:
        text = json.dumps(extra, ensure_ascii=False, default=str)
    if "\\" not in text and redact(text) is text:  # no string needed escaping, none a secret
        return text
    return json.dumps(redact_data(extra), ensure_ascii=False, default=str)


def delivery_row(d: Delivery) -> tuple[Any, ...]:
    """The ``deliveries`` row of *d*, in :data:`DELIVERY_COLUMNS` order; no secret in it.

    One check for the whole row: its plain strings and ``extra``'s JSON, joined.
    """
    values = _COLUMNS(d)
    row = list(values)
    texts: list[int] = []  # positions of the plain string columns
    for i, value in enumerate(values):
        if i == _EXTRA:
            continue
        if isinstance(value, enum.Enum):
            row[i] = value.value
        elif isinstance(value, str):
            texts.append(i)
    # extra may have been changed since the record was made: checked here, as JSON
    extra = json.dumps(values[_EXTRA], ensure_ascii=False, default=str)
    joined = _SEP.join([*(row[i] for i in texts), extra])
    if "\\" not in extra and redact(joined) is joined:  # nothing to hide, nothing escaped
        row[_EXTRA] = extra
        return tuple(row)
    row[_EXTRA] = _extra_json(values[_EXTRA], extra)  # something to hide: string by string
    for i in texts:
        row[i] = redact(row[i])
    return tuple(row)
