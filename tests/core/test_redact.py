"""Redaction (probes.redact): every resolved secret, and its wire forms, out of every text.

The registry is per process, so every value here is random and distinctive:
registering it cannot change what any other test sees.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import secrets
import sqlite3
import string
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drills.core.delivery import Delivery, Outcome
from drills.core.journal import Journal
from drills.core.redaction import GuardedStream, guarded_output
from drills.core.runlog import RunLog
from probes.base import ChannelRejected
from probes.redact import MASK, RedactFilter, RedactingStream, redact, redact_data, register
from probes.settings import SecretRef, SecretUnresolvable


def fresh(length: int = 24, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def test_a_revealed_secret_is_replaced_everywhere_it_occurs(monkeypatch):
    value = "xoxb-" + fresh()
    monkeypatch.setenv("TSG_REDACT_SLACK", value)
    assert redact(f"invalid_auth for Bearer {value}") == f"invalid_auth for Bearer {value}"
    assert SecretRef.parse("env:TSG_REDACT_SLACK").reveal() == value  # registers it
    assert redact(f"invalid_auth for Bearer {value}") == "invalid_auth for Bearer ***"
    assert redact(f"{value}{value}x{value}") == "******x***"


def test_the_length_rule():
    short, word, long = fresh(3), fresh(5), fresh(8)
    for value in (short, word, long):
        register(value)
    # 1-3 characters: never replaced (they would rewrite ordinary text).
    assert redact(f"pw={short} {short}") == f"pw={short} {short}"
    # 4-7: only as a word of its own.
    assert redact(f"pw={word}; Bearer {word}") == "pw=***; Bearer ***"
    assert redact(f"{word}ed x{word}") == f"{word}ed x{word}"
    assert redact(f"（{word}）") == "（***）"  # next to Japanese punctuation: still a word
    # 8+: anywhere, inside words too.
    assert redact(f"x{long}y") == "x***y"


@settings(max_examples=60, deadline=None)
@given(user=st.text(min_size=0, max_size=12), suffix=st.text(max_size=5))
def test_inside_basic_auth_whatever_the_user(user: str, suffix: str):
    password = fresh(16, string.printable.strip())
    register(password)
    header = base64.b64encode(f"{user}:{password}{suffix}".encode()).decode()
    clean = redact(header)
    assert MASK in clean
    # What is left cannot be decoded back into the password (nor any 3-byte run of it
    # that base64 carries on its own: the fully determined groups are all gone).
    raw = password.encode()
    for shift in range(3):
        whole = (len(raw) - shift) // 3 * 3
        assert base64.b64encode(raw[shift : shift + whole]).decode() not in clean


def test_encoded_forms():
    value = fresh(12) + '/+= @&"\\é'
    register(value)
    for form in (
        quote(value, safe=""),
        quote_plus(value),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        base64.urlsafe_b64encode(value.encode()).decode(),
    ):
        assert redact(f"<{form}>") == "<***>", form


def test_a_secret_url_hides_its_signature_and_ids():
    sig, flow = fresh(43), fresh(32).lower()
    url = f"https://prod.example/workflows/{flow}/triggers/manual/paths/invoke?api-version=1&sig={sig}"
    register(url)
    assert redact(f"POST {url} 401") == "POST *** 401"
    said = redact(f"path=/workflows/{flow}/triggers/manual/paths/invoke?api-version=1&sig={sig}")
    assert sig not in said and flow not in said
    assert redact("api-version=1 paths/invoke") == "api-version=1 paths/invoke"  # not secret


def test_each_line_of_a_pem_key():
    body = [fresh(64, string.ascii_letters + "+/") for _ in range(3)]
    pem = "-----BEGIN PRIVATE KEY-----\n" + "\n".join(body) + "\n-----END PRIVATE KEY-----\n"
    register(pem)
    assert redact(f"bad key line: {body[1]}") == "bad key line: ***"
    assert redact("-----BEGIN PRIVATE KEY-----") == "-----BEGIN PRIVATE KEY-----"


def test_a_secret_file_that_is_not_utf8_is_unresolvable_in_two_languages(tmp_path: Path):
    path = tmp_path / "token"
    content = fresh()
    path.write_bytes(b"\xff" + content.encode() + b"\xfe")
    with pytest.raises(SecretUnresolvable) as info:
        SecretRef.parse(f"file:{path}").reveal()
    exc = info.value
    assert "UTF-8 ではありません" in exc.ja and "not UTF-8" in exc.en
    assert str(path) in exc.en and content not in str(exc)
    assert str(exc) == f"{exc.ja} / {exc.en}"


def test_reasons_records_journal_and_log_lines(tmp_path: Path):
    value = "tok-" + fresh()
    register(value)
    fault = ChannelRejected(f"HTTP 401: invalid_auth for Bearer {value}")
    assert value not in str(fault) and fault.reason.endswith("Bearer ***")
    d = Delivery(
        run_id="r",
        step="s",
        municipality_code="131016",
        municipality_name="千代田区",
        channel_id="chat",
        kind="webhook",
        token="TSG-0000000000AA",
        outcome=Outcome.REJECTED,
        reason=f"echo {value}",
        extra={"accepted_detail": {"body": f"Basic {value}"}, value: 1},
    )
    assert value not in repr(d)
    journal = Journal(tmp_path / "j.sqlite")
    run = journal.begin_run(scenario="s", meta={"note": value})
    journal.record(d)
    journal.record_event(run, "roll_call", {"said": [value]})
    journal.finish_run(run)
    journal.close()
    for file in tmp_path.glob("j.sqlite*"):
        assert value.encode() not in file.read_bytes(), file.name
    db = sqlite3.connect(tmp_path / "j.sqlite")
    assert db.execute("SELECT reason FROM deliveries").fetchone()[0] == "echo ***"
    db.close()
    stream = io.StringIO()
    RunLog(stream).error("harness_failure", message=f"boom {value}", nested={"x": [value]})
    assert value not in stream.getvalue() and stream.getvalue().count(MASK) == 2


def test_log_records_with_arguments_and_tracebacks():
    value = "pw-" + fresh()
    register(value)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactFilter())
    log = logging.getLogger("tsunagari.test.redact")
    log.addHandler(handler)
    try:
        log.warning("login as %s refused", value)
        try:
            raise RuntimeError(f"server said {value}")
        except RuntimeError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert value not in text and "login as *** refused" in text
    assert "RuntimeError: server said ***" in text


def test_streams_redact_a_secret_written_in_pieces():
    value = "sid-" + fresh()
    register(value)
    sink = io.StringIO()
    stream = RedactingStream(sink)
    stream.write(f"one {value[:6]}")
    stream.write(f"{value[6:]} two\nthree ")
    assert sink.getvalue() == "one *** two\n"
    stream.write(value)
    stream.flush()
    assert sink.getvalue() == "one *** two\nthree ***"


def test_the_command_line_guard(capsys):
    value = "cli-" + fresh()
    register(value)
    with pytest.raises(ValueError) as info, guarded_output():
        import sys

        assert isinstance(sys.stdout, GuardedStream)
        print(f"printed {value}")
        print(f"to stderr {value}", file=sys.stderr)
        raise ValueError(f"raised {value}")
    out, err = capsys.readouterr()
    assert out == "printed ***\n" and err == "to stderr ***\n"
    assert str(info.value) == "raised ***"


def test_redact_data_keeps_shapes():
    value = "data-" + fresh()
    register(value)
    data = {"a": [value, 1, None, (value,)], value: {"b": f"x{value}"}}
    assert redact_data(data) == {"a": ["***", 1, None, ("***",)], "***": {"b": "x***"}}


def _reference(text: str, values: list[str]) -> str:
    """What :func:`redact` must return, the slow way: every occurrence of every form."""
    from probes.redact import MIN_ANYWHERE, MIN_WORD, derived_forms

    spans = []
    for value in values:
        if len(value) >= MIN_ANYWHERE:
            for form in derived_forms(value):
                spans += [(i, i + len(form)) for i in range(len(text)) if text.startswith(form, i)]
        elif len(value) >= MIN_WORD:
            for i in range(len(text)):
                end = i + len(value)
                if (
                    text.startswith(value, i)
                    and not (i and text[i - 1].isascii() and text[i - 1].isalnum())
                    and not (end < len(text) and text[end].isascii() and text[end].isalnum())
                ):
                    spans.append((i, end))
    out, done = [], 0
    for start, end in sorted(spans):
        if start < done:
            done = max(done, end)
            continue
        out += [text[done:start], MASK]
        done = end
    return "".join(out) + text[done:]


# Secrets from a small alphabet share 4-character chunks (and repeat one inside
# themselves), so the index's shared entries and every offset of a chunk are met.
_tiny = st.text(alphabet="ab:/=", min_size=8, max_size=14)


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(_tiny, min_size=1, max_size=4), pieces=st.lists(st.integers(0, 60), max_size=8)
)
def test_redact_finds_what_a_slow_scan_finds(values: list[str], pieces: list[int]):
    from probes.redact import derived_forms, forget_all

    forget_all()
    values = list(dict.fromkeys(v.strip() for v in values if len(v.strip()) >= 8))
    for value in values:
        register(value)
    forms = sorted({f for v in values for f in derived_forms(v)})
    # A text of forms, their halves and noise, at every alignment to the 4-character scan.
    text = "".join(
        (forms[p % len(forms)] if p % 3 else forms[p % len(forms)][p % 5 :]) + "x" * (p % 4)
        for p in pieces
    )
    assert redact(text) == _reference(text, values)
