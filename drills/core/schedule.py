"""Schedules: a cron expression, and the same schedule as systemd ``OnCalendar=`` lines.

>>> on_calendar("*/30 * * * *")
['*-*-* *:00/30:00']
>>> on_calendar("0 9 * * 1-5")
['Mon,Tue,Wed,Thu,Fri *-*-* 09:00:00']
>>> on_calendar("@daily")
['daily']

Cron runs a job when *either* day-of-month or day-of-week matches (if both
are restricted); systemd needs two ``OnCalendar=`` lines for that.
"""

from __future__ import annotations

__all__ = ["ScheduleError", "check_cron", "on_calendar", "systemd_units"]

_SHORTCUTS = {
    "@hourly": "hourly",
    "@daily": "daily",
    "@midnight": "daily",
    "@weekly": "weekly",
    "@monthly": "monthly",
    "@yearly": "yearly",
    "@annually": "yearly",
}
_DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
# field → (low, high, names)
_FIELDS = {
    "minute": (0, 59, None),
    "hour": (0, 23, None),
    "day": (1, 31, None),
    "month": (1, 12, _MONTHS),
    "weekday": (0, 7, [d.lower() for d in _DAYS]),
}


class ScheduleError(ValueError):
    """A schedule that cron would not accept (message: "日本語 / English")."""


def _value(text: str, field: str) -> int:
    low, high, names = _FIELDS[field]
    if names and text.lower() in names:
        return names.index(text.lower()) + (1 if field == "month" else 0)
    if not text.isdigit() or not low <= int(text) <= high:
        raise ScheduleError(
            f"{field} の値 {text!r} は {low}〜{high} の範囲外です / {field} value {text!r} is outside {low}-{high}"
        )
    return int(text)


def _expand(spec: str, field: str) -> list[int] | None:
    """The values a cron field allows; None for ``*``."""
    low, high, _ = _FIELDS[field]
    if spec == "*":
        return None
    values: set[int] = set()
    for part in spec.split(","):
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(
                    f"{field} の間隔 {step_text!r} が不正です / bad step {step_text!r} in {field}"
                )
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            start, end = _value(a, field), _value(b, field)
            if end < start:
                raise ScheduleError(
                    f"{field} の範囲 {base!r} が逆です / range {base!r} in {field} is reversed"
                )
        else:
            start = _value(base, field)
            end = high if step_text else start
        values.update(range(start, end + 1, step))
    if field == "weekday" and 7 in values:
        values.discard(7)
        values.add(0)
    return sorted(values)


def check_cron(expr: str) -> list[str]:
    """The five fields of a cron expression (or the shortcut alone); ScheduleError if invalid."""
    text = expr.strip()
    if text.startswith("@"):
        if text not in _SHORTCUTS:
            raise ScheduleError(
                f"使えない短縮形です: {text!r}（{', '.join(_SHORTCUTS)}） / unsupported shortcut {text!r}"
            )
        return [text]
    fields = text.split()
    if len(fields) != 5:
        raise ScheduleError(
            f"cron の式は 5 項目（分 時 日 月 曜日）です: {expr!r} / a cron expression has 5 fields "
            f"(minute hour day month weekday): {expr!r}"
        )
    for spec, field in zip(fields, _FIELDS, strict=True):
        _expand(spec, field)
    return fields


def _fmt(values: list[int] | None, spec: str, field: str, width: int = 2) -> str:
    if values is None:
        return "*"
    low = _FIELDS[field][0]
    if spec.startswith("*/") and "," not in spec:
        return f"{low:0{width}d}/{int(spec[2:])}"
    return ",".join(f"{v:0{width}d}" for v in values)


def on_calendar(expr: str) -> list[str]:
    """systemd ``OnCalendar=`` values equivalent to the cron expression *expr*."""
    fields = check_cron(expr)
    if len(fields) == 1:
        return [_SHORTCUTS[fields[0]]]
    minute, hour, day, month, weekday = fields
    mins, hours = _expand(minute, "minute"), _expand(hour, "hour")
    days, months, wdays = _expand(day, "day"), _expand(month, "month"), _expand(weekday, "weekday")
    clock = f"{_fmt(hours, hour, 'hour')}:{_fmt(mins, minute, 'minute')}:00"
    date = f"*-{_fmt(months, month, 'month')}-{_fmt(days, day, 'day')}"
    if wdays is None:
        return [f"{date} {clock}"]
    dow = ",".join(_DAYS[d] for d in wdays)
    if days is None:
        return [f"{dow} {date} {clock}"]
    # cron: day-of-month OR weekday
    return [f"{date} {clock}", f"{dow} *-{_fmt(months, month, 'month')}-* {clock}"]


def systemd_units(
    name: str,
    description: str,
    workdir: object,
    unit_cmd: str,
    timer_description: str,
    timer_lines: str,
    service_note: str = "",
) -> str:
    """The ``NAME.service`` + ``NAME.timer`` pair that ``tsunagari cron`` prints.

    *unit_cmd* is already escaped for systemd (``%`` doubled); *timer_lines* are
    the ``[Timer]`` settings, one per line; *service_note* is a comment line
    after ``ExecStart=`` (without ``#``).

    >>> print(systemd_units("d", "Drill", "/srv", "tsunagari run", "daily", "OnCalendar=daily"))
    ... # doctest: +ELLIPSIS
    # /etc/systemd/system/d.service
    [Unit]
    Description=Drill
    ...
    ExecStart=tsunagari run
    <BLANKLINE>
    # /etc/systemd/system/d.timer
    ...
    OnCalendar=daily
    ...
    """
    note = f"# {service_note}\n" if service_note else ""
    return f"""\
# /etc/systemd/system/{name}.service
[Unit]
Description={description}
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
WorkingDirectory={workdir}
ExecStart={unit_cmd}
{note}
# /etc/systemd/system/{name}.timer
[Unit]
Description={timer_description}

[Timer]
{timer_lines}

[Install]
WantedBy=timers.target
"""
