"""``tsunagari cron --schedule EXPR [-- RUN-ARGS…]`` — print a crontab line and a systemd timer.

Nothing is installed: the text is printed, ready to paste (``crontab -e``, or
``/etc/systemd/system/NAME.service`` + ``NAME.timer``). The command it
schedules is ``tsunagari run`` with RUN-ARGS, from the working directory.
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
        required=True,
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
    from drills.core.schedule import check_cron, on_calendar

    t = Text(lang)
    fields = check_cron(schedule)
    cmd = shlex.join(command)
    cron_cmd = f"cd {shlex.quote(str(workdir))} && {cmd}".replace(
        "%", r"\%"
    )  # % ends a cron command
    unit_cmd = cmd.replace("%", "%%")  # % starts a systemd specifier
    calendars = "\n".join(f"OnCalendar={c}" for c in on_calendar(schedule))
    return f"""\
# crontab ({t("crontab -e で追加。成功時は出力なし＝メールなし", "add with crontab -e; silent on success, so no mail")})
{" ".join(fields)} {cron_cmd}

# /etc/systemd/system/{name}.service
[Unit]
Description=Tsunagari drill
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
WorkingDirectory={workdir}
ExecStart={unit_cmd}
# {t("終了コード 1–4 はユニットの失敗になる（OnFailure= で通知できる）", "exit codes 1-4 fail the unit (notify with OnFailure=)")}

# /etc/systemd/system/{name}.timer
[Unit]
Description=Tsunagari drill schedule ({schedule})

[Timer]
{calendars}
AccuracySec=1s
Persistent=false

[Install]
WantedBy=timers.target

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
    try:
        text = render(args.schedule, args.name, workdir, command, args.lang)
    except ScheduleError as exc:
        print(f"tsunagari cron: {t('エラー', 'error')}: {t.pick(str(exc))}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0
