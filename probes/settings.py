"""Value types shared by every kind's settings: secret references and durations.

Secrets are *references* — ``env:NAME`` or ``file:PATH`` — resolved at send
time and never printed: ``repr``/``str`` show the reference, not the value.

    >>> ref = SecretRef.parse("env:ADACHI_SMTP_PW")
    >>> str(ref)
    'env:ADACHI_SMTP_PW'
"""

from __future__ import annotations

import math
import os
import re
import reprlib
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainSerializer,
    WithJsonSchema,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from probes.redact import register

__all__ = [
    "DURATION_JSON_SCHEMA",
    "MAX_DURATION_S",
    "SECRET_REF_JSON_SCHEMA",
    "Duration",
    "DurationError",
    "SecretRef",
    "SecretUnresolvable",
    "brief",
    "parse_duration",
]

# An environment variable name, as a secret reference may name it.
_ENV_NAME = r"[A-Za-z_][A-Za-z0-9_]*"

# Secret files as last read: path → ((device, inode, size, mtime, ctime), value). A reveal
# stats the file and reads it again only when it changed (rotated, rewritten, chmod):
# one syscall per send instead of open, read and close.
_FILES: dict[str, tuple[tuple[int, int, int, int, int], str]] = {}


def _stamp(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _read_file(path: str) -> tuple[tuple[int, int, int, int, int], bytes]:
    """A secret file's stamp and bytes, both from one open (what was read is what is stamped)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        data = os.read(fd, st.st_size + 1)
        if 0 < len(data) <= st.st_size:  # all of it, as fstat said
            return _stamp(st), data
        chunks = [data]  # grown since fstat, or sized 0 as /proc reports: read to the end
        while chunks[-1]:
            chunks.append(os.read(fd, 65536))
        return _stamp(st), b"".join(chunks)
    finally:
        os.close(fd)


class SecretUnresolvable(LookupError):
    """A secret reference points at nothing (unset variable, unreadable or non-UTF-8 file).

    ``str(exc)`` is ``"日本語 / English"``; ``ja`` and ``en`` hold the halves.
    Neither ever contains the secret's value.
    """

    def __init__(self, ja: str, en: str) -> None:
        super().__init__(f"{ja} / {en}")
        self.ja, self.en = ja, en


class SecretRef:
    """A reference to a secret; the value is read only by :meth:`reveal`."""

    __slots__ = ("_inline", "source", "target")

    def __init__(self, source: str, target: str, inline: str | None = None) -> None:
        self.source = source
        self.target = target
        self._inline = inline

    @classmethod
    def parse(cls, text: str) -> SecretRef:
        if not isinstance(text, str):
            raise ValueError("secret must be a reference string: env:NAME or file:PATH")
        source, sep, target = text.partition(":")
        if not sep or source not in ("env", "file") or not target:
            raise ValueError(
                "secrets must be references (env:NAME or file:PATH), never literal values"
            )
        if source == "env" and not re.fullmatch(_ENV_NAME, target):
            raise ValueError(f"not a valid environment variable name: {target!r}")
        return cls(source, target)

    @classmethod
    def inline(cls, value: str, label: str = "simulator") -> SecretRef:
        """A secret held in memory (simulators only; cannot come from a registry file)."""
        return cls("inline", label, inline=value)

    def reveal(self) -> str:
        """The secret's value. Call at send time only; never log the result.

        The value is registered with :mod:`probes.redact`, so from now on it is
        replaced by ``***`` in every reason, log line and output of this process.
        """
        value = self._resolve()
        register(value)
        return value

    def _resolve(self) -> str:
        if self.source == "inline":
            assert self._inline is not None
            return self._inline
        if self.source == "env":
            value = os.environ.get(self.target)
            if value is None:
                raise SecretUnresolvable(
                    f"環境変数 {self.target} が設定されていません",
                    f"environment variable {self.target} is not set",
                )
            return value
        try:
            known = _FILES.get(self.target)
            if known is not None and known[0] == _stamp(os.stat(self.target)):
                return known[1]
            stamp, data = _read_file(self.target)
        except OSError as exc:
            raise SecretUnresolvable(
                f"秘密情報のファイル {self.target} を読めません（{exc.strerror}）",
                f"cannot read secret file {self.target}: {exc.strerror}",
            ) from None
        try:
            value = data.decode("utf-8").strip()
            _FILES[self.target] = (stamp, value)
            return value
        except UnicodeDecodeError as exc:
            # Say where, never what: the bytes may be the secret itself.
            raise SecretUnresolvable(
                f"秘密情報のファイル {self.target} が UTF-8 ではありません（{exc.start} バイト目）",
                f"secret file {self.target} is not UTF-8 text (byte {exc.start})",
            ) from None

    def check(self) -> None:
        """Raise :class:`SecretUnresolvable` if the reference cannot be resolved now."""
        self.reveal()

    def verify(self) -> None:
        """Raise :class:`SecretUnresolvable` if it cannot be resolved now; reveal nothing.

        What a registry check needs: the file is read (once: a send then only stats
        it) but the value is not registered with :mod:`probes.redact` — the send's
        :meth:`reveal` does that before the value goes anywhere, and a check of
        10,000 channels does not pay for 20,000 redactions it may never need.
        """
        self._resolve()

    def __str__(self) -> str:
        return f"{self.source}:{self.target}" if self.source != "inline" else "inline:***"

    def __repr__(self) -> str:
        return f"SecretRef({self})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretRef) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source_type: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        def validate(value: Any) -> SecretRef:
            if isinstance(value, SecretRef):
                return value
            return cls.parse(value)

        return core_schema.no_info_plain_validator_function(
            validate, serialization=core_schema.plain_serializer_function_ser_schema(str)
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return dict(SECRET_REF_JSON_SCHEMA)


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h|d)?\s*$")


MAX_DURATION_S = 36500 * 86400.0
"""The longest duration anything accepts: 36500d (100 years). Longer is a typo."""


class DurationError(ValueError):
    """A malformed or meaningless duration; ``ja`` and ``en`` say why (``str`` is English)."""

    def __init__(self, ja: str, en: str) -> None:
        super().__init__(en)
        self.ja = ja
        self.en = en


def brief(value: Any) -> str:
    """A short repr that cannot fail: huge numbers and long texts are cut.

    >>> brief("x" * 100), brief(10**400), brief(1.5)
    ("'xxxxxxxxxxxxxxxxxxxx…'", '~1e400', '1.5')
    """
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**24:
        return f"{'-' if value < 0 else ''}~1e{int(abs(value).bit_length() * 0.30103)}"
    if isinstance(value, str) and len(value) > 24:
        return repr(value[:20] + "…")
    try:
        text = reprlib.repr(value)
    except ValueError:  # an int past Python's 4300-digit str() limit, deep in a container
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 40 else f"{text[:36]}…"


def parse_duration(value: Any) -> float:
    """Seconds from ``"60s"``, ``"2m"``, ``"500ms"``, ``"1.5h"``, ``"30d"`` or a plain number.

    A duration is finite, not negative and at most 36500d (:data:`MAX_DURATION_S`):
    NaN, infinity and a 1 followed by 400 zeros are :class:`DurationError`, not
    ``OverflowError``. Whether 0 means anything is for the field to say.

    >>> parse_duration("2m"), parse_duration("500ms"), parse_duration(3), parse_duration("30d")
    (120.0, 0.5, 3.0, 2592000.0)
    >>> for bad in (float("nan"), 10**400):
    ...     try:
    ...         parse_duration(bad)
    ...     except DurationError as exc:
    ...         print(exc)
    a duration must be a finite number of seconds, not nan
    duration ~1e400 is too long (the limit is 36500d, 100 years)
    """
    if isinstance(value, bool):
        raise DurationError(
            "時間は秒数か '60s' のような文字列で書いてください",
            "a duration must be a number of seconds or a string like '60s'",
        )
    seconds: float | None = None
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
    elif isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match:
            seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    shown = brief(value)
    if seconds is None:
        raise DurationError(
            f"時間の書き方が正しくありません: {shown}（例: 500ms, 60s, 2m, 1h, 30d）",
            f"malformed duration {shown}: use a number with a unit, e.g. 500ms, 60s, 2m, 1h, 30d",
        )
    if math.isnan(seconds) or (math.isinf(seconds) and isinstance(value, float)):
        raise DurationError(
            f"時間は有限の秒数です（{shown} は使えません）",
            f"a duration must be a finite number of seconds, not {shown}",
        )
    if seconds < 0:
        raise DurationError("時間は負にできません", "a duration cannot be negative")
    if seconds > MAX_DURATION_S:
        raise DurationError(
            f"時間が長すぎます: {shown}（上限は 36500d = 100 年）",
            f"duration {shown} is too long (the limit is 36500d, 100 years)",
        )
    return seconds


# What a registry file may hold for these types, as JSON Schema (the registry's
# schema and reference are generated from it: drills/core/schema.py).
SECRET_REF_JSON_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": f"^(env:{_ENV_NAME}|file:.+)$",
    "description": (
        "秘密情報の参照（値そのものは書かない）: env:環境変数名 か file:ファイルのパス / "
        "a secret reference, never the value: env:VARIABLE or file:PATH"
    ),
}
DURATION_JSON_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "number", "minimum": 0, "maximum": MAX_DURATION_S},
        {"type": "string", "pattern": _DURATION_RE.pattern},
    ],
    "description": (
        "時間: 秒数か単位付きの文字列（500ms, 60s, 2m, 1h, 30d） / "
        "a duration: seconds, or a string with a unit (500ms, 60s, 2m, 1h, 30d)"
    ),
}


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(float),
    WithJsonSchema(DURATION_JSON_SCHEMA, mode="validation"),
]
