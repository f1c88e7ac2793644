"""Keep resolved secrets out of everything that leaves the process.

Every value a :class:`~probes.settings.SecretRef` reveals is registered here
(``SecretRef.reveal`` calls :func:`register`); :func:`redact` replaces each
registered value, and the forms it takes on the wire, with ``***``. The
harness runs every reason, error text, journal row, JSON log line and console
line through it before it leaves: a provider error that echoes the credential
(Slack's ``invalid_auth`` quoting the bearer token, a Twilio 401 repeating the
account SID) is journalled and printed with the value replaced.

    >>> register("xoxb-7d1f0c2e9a")
    >>> redact("invalid_auth for Bearer xoxb-7d1f0c2e9a")
    'invalid_auth for Bearer ***'

Which text is replaced — the length rule:

- **8 characters or more**: wherever the value occurs, and its derived forms:
  base64 at each of the three byte alignments (so the value is found inside a
  Basic auth header ``base64(user:password)`` whatever precedes it; the
  standard and the URL-safe alphabet), URL-encoded (``quote``/``quote_plus``),
  JSON-escaped, each line of a multi-line value (a PEM key), and the parts of
  a secret URL (its password, query values and long path segments: a Teams
  workflow URL's ``sig``).
- **4 to 7 characters**: only where the value stands as a word of its own —
  not next to an ASCII letter or digit — so a password ``pass`` is hidden in
  ``Bearer pass`` or ``pw=pass`` but ``passed`` is left alone.
- **1 to 3 characters**: never replaced. Replacing them would rewrite ordinary
  digits and words everywhere, and the pattern of ``***`` would itself give the
  value away; such a value is too weak to be a secret (README, "Secrets").

The registry is per process and only grows; values are kept in memory only.
:class:`RedactFilter` redacts log records for a handler that does not write to
the console; :class:`RedactingStream` redacts a text stream line by line (the
``tsunagari`` command line wraps stdout and stderr in it:
:mod:`drills.core.redaction`).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import traceback
from binascii import b2a_base64 as _b64  # base64.b64encode without its Python layer
from typing import Any, TextIO
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

__all__ = [
    "MASK",
    "MIN_ANYWHERE",
    "MIN_WORD",
    "RedactFilter",
    "RedactingStream",
    "active",
    "derived_forms",
    "forget_all",
    "redact",
    "redact_data",
    "register",
]

MASK = "***"
MIN_ANYWHERE = 8  # replaced wherever it occurs, derived forms too
MIN_WORD = 4  # replaced only as a word of its own; shorter values are never replaced

_lock = threading.Lock()
_values: set[str] = set()
# Forms of 8+ characters, filed under each of their first four 4-character chunks:
# any occurrence covers a chunk at a position divisible by 4, so :func:`redact` looks
# at every fourth position only. Registering is O(forms), redacting one pass, however
# many secrets a drill over thousands of channels registers. An entry is the form
# itself (the same string object under all four chunks), a tuple of forms only where
# two forms share a chunk: 20,000 secrets (10,000 channels) take ~38 MB, not the
# ~70 MB of a (form, offset) tuple per chunk. A hit finds its offset (0-3) again.
_CHUNK = 4
_anywhere: dict[str, str | tuple[str, ...]] = {}
_words: re.Pattern[str] | None = None  # the few 4-7 character values, as whole words
_URLSAFE = bytes.maketrans(b"+/", b"-_")
# Characters that URL quoting and JSON leave as they are (and no line break, no "://").
_UNRESERVED = re.compile(r"[A-Za-z0-9._~-]*")


def derived_forms(value: str) -> set[str]:
    """The value and the forms it takes on the wire (for values of 8+ characters).

    >>> import base64
    >>> header = base64.b64encode(b"drill:p@ss word!").decode()
    >>> [form for form in derived_forms("p@ss word!") if form in header]
    ['cEBzcyB3b3JkIQ==', 'cEBzcyB3b3Jk']
    >>> sorted(form for form in derived_forms("p@ss word!") if "%" in form)
    ['p%40ss%20word%21', 'p%40ss+word%21']
    """
    forms = {value}
    add = forms.add
    raw = value.encode("utf-8")
    for shift in range(3):
        # The base64 characters that depend only on the value's own bytes, for each
        # of the three alignments it can have inside a longer string (user:password);
        # the URL-safe alphabet is the standard one with ``+/`` as ``-_``.
        part = raw[shift:]
        core = _b64(part[: len(part) // 3 * 3], newline=False)
        add(core.decode("ascii"))
        add(core.translate(_URLSAFE).decode("ascii"))
    whole = _b64(raw, newline=False)
    add(whole.decode("ascii"))
    add(whole.translate(_URLSAFE).decode("ascii"))
    if not _UNRESERVED.fullmatch(value):  # else quoted, JSON and line forms are the value itself
        forms |= {quote(value, safe=""), quote(value), quote_plus(value)}
        forms |= {json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
        for line in value.splitlines():
            line = line.strip()
            if len(line) >= MIN_ANYWHERE and not line.startswith("-----"):  # not PEM armour
                forms.add(line)
        forms |= _url_parts(value)
    return {f for f in forms if len(f) >= MIN_ANYWHERE}


def _url_parts(value: str) -> set[str]:
    """The secret parts of a secret URL (a Teams workflow URL carries ``sig=…``).

    Its password, each query value and each long path segment (an id of 16+
    characters), raw and decoded: an error may quote the path without the host.
    """
    if "://" not in value:
        return set()
    parts = urlsplit(value.strip())
    found = {parts.password or ""}
    found |= {v for _, v in parse_qsl(parts.query, keep_blank_values=True)}
    found |= {unquote(s) for s in parts.path.split("/") if len(s) >= 16}
    found |= {part for part in (parts.query, parts.path + "?" + parts.query) if parts.query}
    return {quote(f, safe="") for f in found} | {quote_plus(f) for f in found} | found


def register(value: str) -> None:
    """Remember a resolved secret value so that :func:`redact` hides it from now on."""
    global _words
    value = value.strip()
    if len(value) < MIN_WORD or value in _values:
        return
    with _lock:
        if value in _values:
            return
        if len(value) >= MIN_ANYWHERE:
            anywhere = _anywhere
            for form in derived_forms(value):
                for offset in range(_CHUNK):
                    chunk = form[offset : offset + _CHUNK]
                    had = anywhere.get(chunk)
                    if had is None:
                        anywhere[chunk] = form
                    elif type(had) is str:
                        if had != form:
                            anywhere[chunk] = (had, form)
                    elif form not in had:
                        anywhere[chunk] = (*had, form)
        else:
            words = sorted((v for v in _values | {value} if len(v) < MIN_ANYWHERE), key=len)
            joined = "|".join(re.escape(w) for w in reversed(words))
            _words = re.compile(rf"(?<![0-9A-Za-z])(?:{joined})(?![0-9A-Za-z])")
        _values.add(value)


def forget_all() -> None:
    """Forget every registered value (test isolation: one test's secrets are not the next's).

    A drill process never calls this: its secrets stay hidden until it exits.
    """
    global _words
    with _lock:
        _values.clear()
        _anywhere.clear()
        _words = None


def active() -> bool:
    """Is any secret registered (is there anything to redact)?"""
    return bool(_values)


def redact(text: str) -> str:
    """*text* with every registered secret (and its derived forms) replaced by ``***``."""
    if not _values or len(text) < MIN_WORD:
        return text
    spans: list[tuple[int, int]] = []
    anywhere = _anywhere
    for at in range(0, len(text) - _CHUNK + 1, _CHUNK):
        chunk = text[at : at + _CHUNK]
        hit = anywhere.get(chunk)
        if hit is None:
            continue
        for form in (hit,) if type(hit) is str else hit:
            for offset in range(_CHUNK):  # where in the form's first four this chunk is
                start = at - offset
                if form.startswith(chunk, offset) and start >= 0 and text.startswith(form, start):
                    spans.append((start, start + len(form)))
    if _words is not None:
        spans += (m.span() for m in _words.finditer(text))
    if not spans:
        return text
    out: list[str] = []
    done = 0
    for start, end in sorted(spans):
        if start < done:  # overlaps the span just replaced: one mask for both
            done = max(done, end)
            continue
        out += (text[done:start], MASK)
        done = end
    out.append(text[done:])
    return "".join(out)


_SEP = "\x1f"  # between strings checked together: neither a letter nor a digit
_SCALARS = (str, int, float, bool, type(None))


def redact_data(data: Any) -> Any:
    """A copy of JSON-like *data* with every string (keys too) redacted.

    A flat dict (a record's ``extra``) is checked in one pass over its strings
    joined: a value anywhere in one string is in the joined text too, and a
    whole-word value stays a whole word (the separator is no letter or digit).
    Only a dict where something is found is redacted string by string.
    """
    if not _values:
        return data
    if isinstance(data, dict) and all(isinstance(v, _SCALARS) for v in data.values()):
        strings = [s for pair in data.items() for s in pair if isinstance(s, str)]
        joined = _SEP.join(strings)
        if redact(joined) is joined:
            return dict(data)
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, dict):
        return {redact_data(k): redact_data(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return type(data)(redact_data(v) for v in data)
    return data


class RedactFilter(logging.Filter):
    """A logging filter (for handlers) that redacts the message, its traceback and stack."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _values:
            return True
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text = text
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class RedactingStream:
    """A text stream that redacts whole lines before passing them on.

    Text is held until a newline (or :meth:`flush`), so a secret written in two
    pieces is still caught. Everything else is the wrapped stream's.
    """

    def __init__(self, stream: TextIO) -> None:
        self.wrapped = stream
        self._pending = ""

    def write(self, text: str) -> int:
        if not _values and not self._pending:
            return self.wrapped.write(text)
        self._pending += text
        head, newline, tail = self._pending.rpartition("\n")
        if newline:
            self.wrapped.write(redact(head + newline))
            self._pending = tail
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._pending:
            self.wrapped.write(redact(self._pending))
            self._pending = ""
        self.wrapped.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)
