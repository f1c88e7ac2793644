"""``tsunagari cron --random-within 09:00-17:00 --unannounced-seed REF [--weekdays]``.

cron cannot start a job at a random time, so two honest ways are printed; use one.

A. **crontab, seeded wait** (recommended): the line fires at the window's start
   and runs ``tsunagari run --unannounced-window 09:00-17:00 --unannounced-seed REF``,
   which waits until the time drawn from the secret seed and the date
   (:func:`drills.core.unannounced.draw_start`) and then drills. The journal
   records ``announced: false`` with ``drawn_by: "seed"``; whoever holds the seed
   can reproduce each day's time afterwards (``tsunagari cron --random-within …
   --reveal DATE``, past dates only), nobody else can predict it.
B. **systemd timer, systemd's randomness**: ``OnCalendar=`` at the window's start
   (``Mon..Fri`` with ``--weekdays``, zone ``Asia/Tokyo``) and
   ``RandomizedDelaySec=`` the window's length less one second; systemd picks the
   delay, the service runs ``tsunagari run --unannounced WINDOW`` at once and the
   journal records ``announced: false`` with ``drawn_by: "timer"``. Nothing can
   reproduce systemd's draw: the run's start time is the only record.
   ``FixedRandomDelay=false`` (systemd's default, written out on purpose):
   ``true`` would give the same delay every day (it is derived from the machine
   and the unit's name), so staff would soon know the time.

The window is Asia/Tokyo whatever the machine's time zone. cron fires on the
machine's clock: on a machine not on Japan time the crontab line is converted
(and its weekdays shifted when the conversion crosses midnight), and a note says
so; the run itself checks the day and window in Japan time in any case.
Public holidays are not skipped (see :mod:`drills.core.unannounced`).

Light on purpose (``tsunagari cron`` imports nothing heavy): the seed is only read
for ``--reveal``.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

from drills.core.i18n import Text

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: cron's start-up imports nothing it does not use
if TYPE_CHECKING:
    from datetime import date, tzinfo
    from typing import Any

    from drills.core.unannounced import Window

__all__ = ["add_arguments", "cron_fields", "render_unannounced", "reveal", "run_unannounced"]

_REF = re.compile(r"^(env:[A-Za-z_][A-Za-z0-9_]*|file:\S.*)$")
_WEEKDAY_NAMES = ["月", "火", "水", "木", "金", "土", "日"]


def add_arguments(p: Any, t: Text) -> None:
    p.add_argument(
        "--random-within",
        metavar="HH:MM-HH:MM",
        help=t(
            "抜き打ち訓練: 日本時間のこの時間帯の中の、予告されない時刻に実行する（--schedule の代わり）",
            "unannounced drill: run at an unannounced time inside this window, Asia/Tokyo "
            "(instead of --schedule)",
        ),
    )
    p.add_argument(
        "--weekdays",
        action="store_true",
        help=t(
            "--random-within を月〜金だけにする（祝日は除外しません）",
            "--random-within on Monday to Friday only (public holidays are not skipped)",
        ),
    )
    p.add_argument(
        "--unannounced-seed",
        metavar="env:NAME|file:PATH",
        help=t(
            "時刻を決める秘密の種の参照（値は表示しません）",
            "reference to the secret seed of the drawn time (its value is never shown)",
        ),
    )
    p.add_argument(
        "--reveal",
        metavar="YYYY-MM-DD",
        help=t(
            "監査用: 過去のその日に決まっていた時刻を表示する（種が必要）",
            "for audit: show the time drawn for that past day (needs the seed)",
        ),
    )


def cron_fields(window: Window, weekdays: bool, zone: tzinfo, today: date) -> tuple[str, str]:
    """The crontab time fields that fire at the window's start (Japan time) on a machine
    whose clock is in *zone*, and the machine time they mean (``HH:MM``).

    >>> from datetime import date, timezone
    >>> from drills.core.unannounced import TOKYO, parse_window
    >>> w = parse_window("09:00-17:00")
    >>> cron_fields(w, True, TOKYO, date(2026, 12, 7))
    ('0 9 * * 1-5', '09:00')
    >>> cron_fields(parse_window("08:30-17:00"), True, timezone.utc, date(2026, 12, 7))
    ('30 23 * * 0-4', '23:30')
    """
    from datetime import datetime

    from drills.core.unannounced import TOKYO

    local = datetime.combine(today, window.start, TOKYO).astimezone(zone)
    shift = (local.date() - today).days  # -1, 0 or +1
    dow = "*"
    if weekdays:
        dow = f"{1 + shift}-{5 + shift}"
    return f"{local.minute} {local.hour} * * {dow}", f"{local:%H:%M}"


def render_unannounced(
    window: Window,
    weekdays: bool,
    seed_ref: str,
    name: str,
    workdir: Path,
    command: list[str],
    lang: str,
    zone: tzinfo,
    today: date,
) -> str:
    """Both ways (crontab with the seeded wait; systemd timer with RandomizedDelaySec) as text.

    *command* is ``tsunagari --lang L run`` followed by the operator's RUN-ARGS.
    """
    from datetime import datetime

    from drills.core.schedule import systemd_units
    from drills.core.unannounced import TOKYO

    t = Text(lang)
    at = command.index("run") + 1
    waited = [
        *command[:at],
        "--unannounced-window",
        str(window),
        "--unannounced-seed",
        seed_ref,
        *(["--weekdays"] if weekdays else []),
        *command[at:],
    ]
    marked = [*command[:at], "--unannounced", str(window), *command[at:]]
    fields, local = cron_fields(window, weekdays, zone, today)
    cron_cmd = f"cd {shlex.quote(str(workdir))} && {shlex.join(waited)}".replace("%", r"\%")
    unit_cmd = shlex.join(marked).replace("%", "%%")
    start = f"{window.start:%H:%M}"
    offset = datetime.combine(today, window.start, TOKYO).astimezone(zone).strftime("%z")
    zone_note = ""
    if offset != "+0900":
        zone_note = "# " + t(
            f"この機械の時刻帯は UTC{offset} なので、日本時間 {start} はこの機械の {local} です"
            "（夏時間のある時刻帯では年 2 回ずれます。機械を日本時間にするのが確実です）",
            f"this machine's clock is UTC{offset}: {start} Japan time is {local} here (a zone "
            "with daylight saving drifts twice a year; a machine on Japan time is safest)",
        )
    days = t("月〜金", "Mon-Fri") if weekdays else t("毎日", "every day")
    timer_lines = f"""\
OnCalendar={"Mon..Fri" + " " if weekdays else ""}*-*-* {window.start:%H:%M}:00 Asia/Tokyo
# {t("窓の長さ − 1 秒: 開始は窓の中に一様に散らばる", "the window's length less one second: the start falls uniformly inside the window")}
RandomizedDelaySec={window.seconds - 1}
# {t("true にすると毎日同じ遅れになる（機械とユニット名から決まる）ので職員に時刻が知られる", "true would give the same delay every day (from the machine and the unit name): staff would learn the time")}
FixedRandomDelay=false
AccuracySec=1s
Persistent=false"""
    units = systemd_units(
        name,
        "Tsunagari unannounced drill",
        workdir,
        unit_cmd,
        f"Tsunagari unannounced drill ({window} Asia/Tokyo)",
        timer_lines,
    )
    return f"""\
# {t("抜き打ち訓練", "unannounced drill")}: {window} {t("日本時間", "Asia/Tokyo")}, {days}{t("（祝日は除外しません）", " (public holidays are not skipped)") if weekdays else ""}
# {t("次の A か B のどちらか一方だけを使ってください", "use ONE of A or B below")}

# A. crontab ({t("種による待機。時刻は秘密の種と日付から決まり、種を持つ人だけが後から再現できる", "seeded wait: the time comes from the secret seed and the date; only the seed's holder can reproduce it afterwards")})
# {t(f"窓の始まり {start} に起動し、決まった時刻まで待ってから実行。待機中のログに時刻は出ません", f"fires at the window's start {start} and waits for the drawn time; the log never shows it in advance")}
{zone_note + chr(10) if zone_note else ""}{fields} {cron_cmd}

# B. systemd ({t("systemd の RandomizedDelaySec が時刻を決める。再現はできず、記録されるのは開始時刻だけ", "systemd's RandomizedDelaySec picks the time; not reproducible, only the start time is recorded")})
{units}
# {t("有効化", "enable")}: systemctl daemon-reload && systemctl enable --now {name}.timer
"""


def reveal(seed: bytes, day: date, window: Window, weekdays: bool, today: date, lang: str) -> str:
    """The audit line for a *past* day (a later day would announce the drill)."""
    from drills.core.unannounced import UnannouncedError, draw_start, is_drill_day

    t = Text(lang)
    if day >= today:
        raise UnannouncedError(
            f"--reveal は過去の日付だけです（今日以降の時刻を表示すると予告になります）: {day}"
            f" / --reveal takes past dates only (showing today's or a later time would "
            f"announce the drill): {day}"
        )
    wd = _WEEKDAY_NAMES[day.weekday()] if lang == "ja" else f"{day:%a}"
    if not is_drill_day(day, weekdays=weekdays):
        return f"{day} ({wd}) {t('訓練なし（土日）', 'no drill (weekend)')}\n"
    return f"{day} ({wd}) {draw_start(seed, day, window):%H:%M:%S} JST  ({window})\n"


def run_unannounced(args: Any, workdir: Path, command: list[str]) -> int:
    from datetime import date, datetime

    from drills.core.unannounced import TOKYO, UnannouncedError, parse_window

    t = Text(args.lang)
    try:
        if (args.schedule is None) == (args.random_within is None):
            raise UnannouncedError(
                "--schedule か --random-within のどちらか一方を指定してください"
                " / give either --schedule or --random-within"
            )
        if args.random_within is None:
            raise UnannouncedError(
                "--weekdays・--unannounced-seed・--reveal は --random-within と一緒に使います"
                " / --weekdays, --unannounced-seed and --reveal go with --random-within"
            )
        window = parse_window(args.random_within, "--random-within")
        ref = args.unannounced_seed or ""
        if not _REF.match(ref):
            raise UnannouncedError(
                "--random-within には --unannounced-seed（env:変数名 か file:パス）が必要です。値そのものは書けません"
                " / --random-within needs --unannounced-seed (env:NAME or file:PATH), never the value"
            )
        today = datetime.now(TOKYO).date()
        if args.reveal is not None:
            try:
                day = date.fromisoformat(args.reveal)
            except ValueError:
                raise UnannouncedError(
                    f"--reveal は YYYY-MM-DD の日付です: {args.reveal!r}"
                    f" / --reveal must be a date YYYY-MM-DD: {args.reveal!r}"
                ) from None
            from drills.operator.unannounced_wait import read_seed

            text = reveal(read_seed(ref), day, window, args.weekdays, today, args.lang)
        else:
            zone = datetime.now().astimezone().tzinfo
            assert zone is not None
            text = render_unannounced(
                window, args.weekdays, ref, args.name, workdir, command, args.lang, zone, today
            )
    except UnannouncedError as exc:
        print(f"tsunagari cron: {t('エラー', 'error')}: {t.pick(str(exc))}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0
