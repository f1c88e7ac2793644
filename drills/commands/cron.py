"""``tsunagari cron --schedule EXPR [-- RUN-ARGS…]`` — print a crontab line and a systemd timer.

Nothing is installed: the text is printed, ready to paste (``crontab -e``, or
``/etc/systemd/system/NAME.service`` + ``NAME.timer``). The command it
schedules is ``tsunagari run`` with RUN-ARGS, from the working directory.

``--random-within 09:00-17:00 --unannounced-seed REF [--weekdays]`` prints an
*unannounced* drill's schedule instead (:mod:`drills.operator.unannounced_cron`).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from pathlib import Path

from drills.core.i18n import Text

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: cron's path imports nothing it does not use
if TYPE_CHECKING:
    from typing import Any


def register(sub: Any, t: Text) -> None:
    from drills.cli import add_help

    p = sub.add_parser(
        "cron",
        help=t(
            "定期実行の設定（crontab と systemd タイマー）を表示する",
            "print a crontab line and a systemd timer for scheduled drills",
        ),
        epilog=t(
            "例: tsunagari cron --schedule '0 9 * * 1-5' -- --registry registry.yaml scenarios/",
            "example: tsunagari cron --schedule '0 9 * * 1-5' -- --registry registry.yaml scenarios/",
        ),
        add_help=False,
    )
    add_help(p, t)
    p.add_argument(
        "--schedule",
        metavar="EXPR",
        help=t(
            "cron 形式（分 時 日 月 曜日）か @hourly・@daily など",
            "cron expression (minute hour day month weekday) or @hourly, @daily, ...",
        ),
    )
    p.add_argument(
        "--name", default="tsunagari-drill", help=t("systemd ユニット名", "systemd unit name")
    )
    p.add_argument(
        "--workdir",
        default=None,
        help=t("実行フォルダ（既定: 現在のフォルダ）", "working directory (default: current)"),
    )
    from drills.operator.unannounced_cron import add_arguments

    add_arguments(p, t)  # --random-within, --weekdays, --unannounced-seed, --reveal
    p.add_argument(
        "run_args",
        nargs=argparse.REMAINDER,
        metavar="RUN-ARGS",
        help=t("tsunagari run に渡す引数（-- の後に）", "arguments for tsunagari run (after --)"),
    )
    p.set_defaults(func=run)


def tsunagari_command() -> list[str]:
    """An absolute command that starts this installation's ``tsunagari``."""
    beside = Path(sys.executable).parent / "tsunagari"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("tsunagari")
    return [str(Path(found).resolve())] if found else [sys.executable, "-m", "drills.cli"]


def render(schedule: str, name: str, workdir: Path, command: list[str], lang: str) -> str:
    """The crontab line and the two systemd units, as one printable text."""
    from drills.core.schedule import check_cron, on_calendar, systemd_units

    t = Text(lang)
    fields = check_cron(schedule)
    cmd = shlex.join(command)
    cron_cmd = f"cd {shlex.quote(str(workdir))} && {cmd}".replace(
        "%", r"\%"
    )  # % ends a cron command
    unit_cmd = cmd.replace("%", "%%")  # % starts a systemd specifier
    calendars = "\n".join(f"OnCalendar={c}" for c in on_calendar(schedule))
    units = systemd_units(
        name,
        "Tsunagari drill",
        workdir,
        unit_cmd,
        f"Tsunagari drill schedule ({schedule})",
        f"{calendars}\nAccuracySec=1s\nPersistent=false",
        t(
            "終了コード 1–4 はユニットの失敗になる（OnFailure= で通知できる）",
            "exit codes 1-4 fail the unit (notify with OnFailure=)",
        ),
    )
    return f"""\
# crontab ({t("crontab -e で追加。成功時は出力なし＝メールなし", "add with crontab -e; silent on success, so no mail")})
{" ".join(fields)} {cron_cmd}

{units}
# {t("有効化", "enable")}: systemctl daemon-reload && systemctl enable --now {name}.timer
"""


def run(args: argparse.Namespace) -> int:
    from drills.core.schedule import ScheduleError

    t = Text(args.lang)
    run_args = list(args.run_args)
    if run_args[:1] == ["--"]:
        run_args = run_args[1:]
    workdir = Path(args.workdir or ".").resolve()
    command = [*tsunagari_command(), "--lang", args.lang, "run", *run_args]
    unannounced = (args.random_within, args.unannounced_seed, args.reveal)
    if args.schedule is None or args.weekdays or any(v is not None for v in unannounced):
        from drills.operator.unannounced_cron import run_unannounced

        return run_unannounced(args, workdir, command)
    try:
        text = render(args.schedule, args.name, workdir, command, args.lang)
    except ScheduleError as exc:
        print(f"tsunagari cron: {t('エラー', 'error')}: {t.pick(str(exc))}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0
