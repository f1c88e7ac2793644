"""A delivery row (drills.core.journal.rows): the one-check-per-row path gives exactly
what redacting every string on its own gives, secrets or not, whatever the strings hold.

Every value registered here is random and distinctive (and the registry is emptied
around each test: tests/conftest.py).
"""

from __future__ import annotations

import enum
import json
import secrets
import string
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from drills.core.delivery import Delivery, Outcome
from drills.core.journal.rows import delivery_row
from drills.core.journal.schema import DELIVERY_COLUMNS
from probes.redact import MASK, redact, redact_data, register


def _fresh(length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


# Long values (found anywhere, derived forms too), a short whole-word value, and
# values with characters JSON escapes (a quote, a backslash).
LONG = [_fresh(20), _fresh(12) + '"' + _fresh(4), _fresh(10) + "\\" + _fresh(4)]
WORD = "q" + _fresh(5, string.ascii_lowercase)
# A short value JSON escapes: it has no derived forms, so only its raw self is found.
ESCAPED = "k\\" + _fresh(4, string.ascii_lowercase)


def _register() -> None:
    for value in (*LONG, WORD, ESCAPED):
        register(value)


def _one_by_one(d: Delivery) -> tuple[Any, ...]:
    """The row as every string redacted on its own (what the journal wrote before)."""
    out: list[Any] = []
    for column in DELIVERY_COLUMNS:
        value = getattr(d, column)
        if column == "extra":
            out.append(json.dumps(redact_data(value), ensure_ascii=False, default=str))
        elif isinstance(value, enum.Enum):
            out.append(value.value)
        else:
            out.append(redact(value) if isinstance(value, str) else value)
    return tuple(out)


pieces = st.sampled_from(
    [
        "",
        "団体",
        " ",
        '"',
        "\\",
        "\n",
        "x",
        "-",
        WORD,
        WORD + "s",
        ESCAPED,
        *LONG,
        "TSG-0000000000AB",
    ]
)
texts = st.lists(pieces, max_size=5).map("".join)
extras = st.dictionaries(
    texts, st.one_of(texts, st.integers(), st.lists(texts, max_size=2)), max_size=4
)


@settings(max_examples=300, deadline=None)
@given(name=texts, reason=texts, recipient=st.one_of(st.none(), texts), extra=extras)
def test_a_row_is_what_redacting_each_string_gives(name, reason, recipient, extra):
    _register()
    d = Delivery(
        run_id="R-1",
        step="broadcast",
        municipality_code="131016",
        municipality_name=name,
        channel_id="chat",
        kind="webhook",
        token="TSG-0000000000AB",
        outcome=Outcome.DELIVERED,
        reason=reason,
        recipient=recipient,
    )
    object.__setattr__(d, "extra", extra)  # changed after the record was made
    assert delivery_row(d) == _one_by_one(d)


def test_a_secret_in_any_column_is_masked():
    _register()
    secret = LONG[0]
    d = Delivery(
        run_id="R-1",
        step="broadcast",
        municipality_code="131016",
        municipality_name=f"name {secret}",
        channel_id="chat",
        kind="webhook",
        token="TSG-0000000000AB",
        outcome=Outcome.ERROR,
        extra={"detail": f"echo {secret}", secret: 1},
    )
    row = delivery_row(d)
    assert secret not in repr(row)
    assert row[DELIVERY_COLUMNS.index("municipality_name")] == f"name {MASK}"
