"""The ground-truth ledger (probes.sim.ledger) and the exact token match it relies on."""

from __future__ import annotations

import doctest
import importlib

import pytest

from probes.base import find_tokens
from probes.replies import format_reply
from probes.sim.ledger import Fate, Ledger

TOKEN = "TSG-7K3Q9XW2M4PD"


@pytest.mark.parametrize(
    "module", ["probes.base", "probes.sim.ledger", "drills.core.delivery", "drills.core.truth"]
)
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_a_token_inside_a_longer_word_is_no_token() -> None:
    text = f"[{TOKEN}] x{TOKEN} {TOKEN}Z {TOKEN}9 RE[{TOKEN}] 131211"
    assert find_tokens(text) == [TOKEN, TOKEN]


def test_an_answer_is_booked_apart_from_the_question() -> None:
    ledger = Ledger("webhook")
    question = ledger.received_text("130001/chat", f"【訓練】 点呼 [{TOKEN}]", at=1.0)[0]
    ledger.visible(question, at=1.2)
    answer = format_reply(TOKEN, "131211", "受信しました")
    # A simulated staff member's answer is refused twice ("slow down"), then taken.
    ledger.refused_text("130001/chat", f"【訓練】 {answer}\n[{TOKEN}]", code="429", final=False)
    ledger.refused_text("130001/chat", f"【訓練】 {answer}\n[{TOKEN}]", code="429", final=False)
    ledger.received_text("130001/chat", f"【訓練】 {answer}\n[{TOKEN}]", at=2.0)

    booked = ledger.entry(TOKEN)
    assert booked is not None
    assert (booked.fate, booked.refusals, booked.visible_at) == (Fate.VISIBLE, 0, 1.2)
    reply = ledger.entry(TOKEN, "answer:131211")
    assert reply is not None
    assert (reply.refusals, reply.received_at, reply.fate) == (2, 2.0, Fate.PENDING)


def test_down_intervals_are_kept_per_channel() -> None:
    ledger = Ledger("mail")
    ledger.down("a", True, at=1.0)
    ledger.down("a", False, at=2.0)
    ledger.down("b", True, at=1.5)
    assert ledger.was_down("a", 1.9, 3.0) and not ledger.was_down("a", 2.1, 3.0)
    assert ledger.was_down("b", 9.0, 9.5)  # still down
    assert [o.channel for o in ledger.outages()] == ["a", "b"]
