"""The drill options: one table that the pytest plugin, the settings and ``tsunagari run`` read.

Each :class:`Option` is a pytest option (``--registry``) mirrored by an ini setting
(``tsunagari_registry``), a field of :class:`drills.operator.session.DrillSettings` and a
``tsunagari run`` flag that is passed on to pytest. Add a row to :data:`OPTIONS`
and a field to ``DrillSettings``, and all of them have it.

    >>> [o.flag for o in OPTIONS][:3]
    ['--registry', '--municipality', '--live']
    >>> OPTIONS_BY_NAME["select"].ini
    'tsunagari_municipalities'

Also the default output folder and journal path (:data:`DEFAULT_OUT`,
:data:`DEFAULT_JOURNAL`), shared by every command that reads or writes a journal.

Light on purpose: ``tsunagari --help`` imports this module.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from drills.core.i18n import LANGS

__all__ = [
    "DEFAULT_JOURNAL",
    "DEFAULT_OUT",
    "JOURNAL_ENV",
    "JOURNAL_NAME",
    "OPTIONS",
    "OPTIONS_BY_NAME",
    "Option",
    "SettingsError",
    "journal_in",
]

DEFAULT_OUT = Path("tsunagari-out")
"""Where the demo and a drill session write when no ``--out`` is given."""

JOURNAL_NAME = "journal.sqlite"

JOURNAL_ENV = "TSUNAGARI_JOURNAL"
"""The environment variable that names the journal when no ``--journal`` (or ini
``tsunagari_journal``) is given: a file or a ``postgresql://`` URL."""

DEFAULT_JOURNAL = DEFAULT_OUT / JOURNAL_NAME
"""The journal every command uses when no ``--journal`` is given."""


def journal_in(out: Path) -> Path:
    """The journal kept in the output folder *out*.

    >>> journal_in(Path("/srv/drills"))
    PosixPath('/srv/drills/journal.sqlite')
    """
    return out / JOURNAL_NAME


class SettingsError(ValueError):
    """A bad option or ini value (the plugin turns it into ``pytest.UsageError``)."""


# How a value is given:
#   text  one string              path  a file or folder (relative to the folder it was given in)
#   flag  on or off (store_true)  list  repeatable (append; ini: whitespace-separated args)
Kind = Literal["text", "path", "flag", "list"]


@dataclass(frozen=True)
class Option:
    """One drill option: command line, ini setting, settings field and help, in one row."""

    name: str  # the DrillSettings field (and the key of the raw settings)
    flag: str  # the command-line flag, for pytest and ``tsunagari run``
    kind: Kind
    ja: str
    en: str
    metavar: str | None = None
    check: Callable[[Any], Any] | None = None  # a given value → the setting, or SettingsError
    cli_global: bool = False  # the ``tsunagari`` command line already has it on every subcommand
    ini: str = ""  # the ini setting (default: ``tsunagari_`` + the flag's name)
    url_ok: bool = False  # a "path" that may be a URL instead (``scheme://…``, kept as given)

    def __post_init__(self) -> None:
        if not self.ini:
            name = self.flag.removeprefix("--").replace("-", "_")
            object.__setattr__(self, "ini", "tsunagari_" + name)

    @property
    def dest(self) -> str:
        """The pytest option's ``dest`` (prefixed: pytest's namespace is shared)."""
        return "tsunagari_" + self.name

    @property
    def run_dest(self) -> str:
        """The ``tsunagari run`` argparse ``dest``."""
        return self.flag.removeprefix("--").replace("-", "_")

    def help(self, lang: str | None = None) -> str:
        """The help text in *lang*, or both (``"日本語 / English"``) for pytest's help."""
        if lang is None:
            return self.ja if self.ja == self.en else f"{self.ja} / {self.en}"
        return self.ja if lang == "ja" else self.en

    def argparse_kwargs(self) -> dict[str, Any]:
        """``add_argument`` keywords (pytest's ``addoption`` takes the same)."""
        if self.kind == "flag":
            return {"action": "store_true", "default": None}
        if self.kind == "list":
            return {"action": "append", "default": None, "metavar": self.metavar or "VALUE"}
        return {"default": None, "metavar": self.metavar}

    def ini_kwargs(self) -> dict[str, Any]:
        """``parser.addini`` keywords."""
        if self.kind == "flag":
            return {"type": "bool", "default": False}
        if self.kind == "list":
            return {"type": "args", "default": []}
        return {"type": "string", "default": ""}

    def parse(self, raw: Any, base: Path) -> Any:
        """The setting for a raw value (a string, a list or a bool; None or "" when not given)."""
        if self.kind == "flag":
            return bool(raw)
        if self.kind == "list":
            return tuple(str(s) for s in raw or () if s)
        value: Path | str | None
        if raw in (None, ""):
            value = None
        elif self.kind == "path" and self.url_ok and "://" in str(raw):
            value = _url_or_path(self.flag, str(raw), base)
        elif self.kind == "path":
            try:
                p = Path(str(raw)).expanduser()
            except RuntimeError:  # "~name" of a user this machine does not know
                raise SettingsError(
                    f"{self.flag}: {raw!s:.60} のホームフォルダが見つかりません"
                    f" / {self.flag}: no home folder for {raw!s:.60}"
                ) from None
            value = p if p.is_absolute() else base / p
        else:
            value = str(raw)
        return self.check(value) if self.check is not None else value

    def to_args(self, value: Any) -> list[str]:
        """The command-line arguments that give *value* (none for "not given")."""
        if value in (None, False, "", [], ()):
            return []
        if self.kind == "flag":
            return [self.flag]
        if self.kind == "list":
            return [f"{self.flag}={v}" for v in value]
        return [f"{self.flag}={value}"]


def _url_or_path(flag: str, raw: str, base: Path) -> Path | str:
    """A journal URL: ``postgresql://…`` kept as given (read when opened:
    :mod:`drills.core.journal.target`); ``sqlite:///FILE`` is the file, relative to *base*.

    >>> _url_or_path("--journal", "sqlite:///j.sqlite", Path("/srv"))
    PosixPath('/srv/j.sqlite')
    """
    scheme, _, rest = raw.partition("://")
    if scheme.lower() in ("postgresql", "postgres") and rest:
        return raw
    if scheme.lower() == "sqlite" and rest.removeprefix("/"):
        path = Path(rest.removeprefix("/"))
        return path if path.is_absolute() else base / path
    shown = scheme[:20]  # never the rest: it may hold a password
    raise SettingsError(
        f"{flag}: URL は postgresql://… か sqlite:///ファイル の形です（{shown}://…）"
        f" / {flag}: a URL must be postgresql://… or sqlite:///FILE (not {shown}://…)"
    )


def _lang(value: str | None) -> str:
    lang = value or "ja"
    if lang not in LANGS:
        raise SettingsError(
            f"--lang は ja か en です: {lang!r} / --lang must be ja or en: {lang!r}"
        )
    return lang


def _vantage(value: str | None) -> str:
    vantage = (value or "default").strip()
    if not vantage or len(vantage) > 64 or re.search(r"[\x00-\x1f/\\]", vantage):
        raise SettingsError(
            f"--vantage は 64 文字以内の名前です（/ と制御文字は不可）: {vantage!r}"
            f" / --vantage must be a name of at most 64 characters without / or control characters"
        )
    return vantage


def _gateway(value: str | None) -> str | None:
    if value and not re.match(r"^https?://[^\s/]+", value):
        raise SettingsError(
            f"--push-gateway は http(s)://ホスト:ポート の形です: {value!r}"
            f" / --push-gateway must look like http(s)://host:port"
        )
    return value


def _seed(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise SettingsError(f"--seed は整数です: {value!r} / --seed must be an integer") from None


def _unannounced(value: str | None) -> str | None:
    if value is None:
        return None
    from drills.core.unannounced import UnannouncedError, parse_marker

    try:
        window, drawn_by = parse_marker(value)
    except UnannouncedError as exc:
        raise SettingsError(str(exc)) from None
    return f"seed:{window}" if drawn_by == "seed" else window


OPTIONS: tuple[Option, ...] = (
    Option("registry", "--registry", "path", "レジストリ", "registry YAML file", "FILE"),
    Option(
        "select",
        "--municipality",
        "list",
        "対象の団体（コード・名前・タグ、複数可）",
        "municipalities to drill (code, name or tag; repeatable)",
        "SEL",
        ini="tsunagari_municipalities",
    ),
    Option("live", "--live", "flag", "実チャネルへも送信する", "also contact live channels"),
    Option(
        "dry_run",
        "--dry-run",
        "flag",
        "試行: 送信予定（宛先・マーカー・費用見積）を表示するだけで何も送信しない",
        "dry run: show what would be sent (recipients, marker, cost estimate); send nothing",
    ),
    Option(
        "journal",
        "--journal",
        "path",
        f"記録: SQLite のファイルか postgresql:// の URL（既定: $TSUNAGARI_JOURNAL、なければ"
        f"出力フォルダの {JOURNAL_NAME}）",
        f"journal: a SQLite file or a postgresql:// URL (default: $TSUNAGARI_JOURNAL, else"
        f" OUT/{JOURNAL_NAME})",
        "FILE|URL",
        url_ok=True,
    ),
    Option(
        "out",
        "--out",
        "path",
        "出力フォルダ（スコアカード・vantages.json・summary.json）",
        "output folder (scorecards, vantages.json, summary.json)",
        "DIR",
    ),
    Option(
        "push_gateway",
        "--push-gateway",
        "text",
        "実行後にメトリクスを送る Pushgateway",
        "Pushgateway to push metrics to after the run",
        "URL",
        _gateway,
    ),
    Option(
        "textfile",
        "--textfile",
        "path",
        "node_exporter 用のメトリクスのファイルかフォルダ",
        "metrics file or folder for node_exporter",
        "FILE",
    ),
    Option(
        "lang",
        "--lang",
        "text",
        "表示言語 ja|en",
        "language ja|en",
        "ja|en",
        _lang,
        cli_global=True,
    ),
    Option(
        "vantage",
        "--vantage",
        "text",
        "実行場所の名前（庁内LAN、LGWAN など）",
        "where the drill runs from (e.g. LGWAN)",
        "NAME",
        _vantage,
    ),
    Option(
        "lock",
        "--lock",
        "path",
        "実行ロック（既定: 記録.lock）",
        "run lock (default: JOURNAL.lock)",
        "FILE",
    ),
    Option("seed", "--seed", "text", "シミュレータの乱数の種", "simulator random seed", "N", _seed),
    Option(
        "unannounced",
        "--unannounced",
        "text",
        "抜き打ち訓練として記録する（時刻はスケジューラが決めた: systemd の RandomizedDelaySec など）",
        "record the run as an unannounced drill (the scheduler chose the time, e.g. systemd's "
        "RandomizedDelaySec)",
        "HH:MM-HH:MM",
        _unannounced,
    ),
)

OPTIONS_BY_NAME = {o.name: o for o in OPTIONS}
