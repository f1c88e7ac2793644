"""Where the chain broke and why: a *stage* and a *cause* for every record not delivered.

The Fire and Disaster Management Agency reports the nationwide J-ALERT tests
by where the chain broke (the receiver, or the downstream channel) and by
cause (設定誤り, 接続不良, …). This module is the same for a drill: one pure
function, :func:`classify_failure`, from a record's ``outcome``, its reason
code (``extra["reason_code"]``, carried from the probe's exception by the runner,
:func:`drills.core.reasons.fault_code`) and its channel kind. No I/O.

*Stages* (:class:`Stage`)::

    registry   登録・設定   the registration itself is wrong or refused before sending
                            (observer is the sender, encrypted room, SMS cost cap …)
    send       送信         the provider refused the message or could not be reached
    transit    伝達経路     accepted, but never seen at the far end (or seen late)
    far_end    受け手側     the observer could not look (``error``): nothing known

*Causes* (:class:`Cause`): 認証・権限 auth, 設定誤り config, 接続不良 connection,
混雑・制限 congestion (rate limits, quotas, full queues, filters), 遅延 delay, 不明 unknown.

The rules, first match wins:

*Not judged.* ``harness`` (the harness itself failed) and ``interrupted`` (cut
by a signal) say nothing of the channel. On an ``error`` record — the outcome
scoring never counts (:attr:`Outcome.counted`, :mod:`drills.core.scoring`), and
the only one the runner gives them — they are :class:`NotJudged`, not a
:class:`Failure`: outside every stage and cause count, shown apart as
判定不能（ハーネス障害/中断）. A ``harness`` or ``interrupted`` code on an outcome
scoring counts (never written) is read as no code at all.

*Outcome.* ``delivered`` and ``accepted`` are no failure (None: ``accepted`` is
unconfirmed, never lost). ``late`` is always transit / 遅延. ``drill_outage``
is always transit / 接続不良 (the drill's own outage; shown, never the channel's).

*Stage.* A code whose row in :data:`RULES` names a stage (``registry``, or
``transit`` for a carrier's verdict after acceptance) has that stage; otherwise
``error`` → far end, ``rejected`` → send, ``lost`` → send (the provider could not
be reached), except ``not_seen`` → transit.

*Cause.* The code's row in :data:`RULES`; else the code's family, by kind
(:data:`FAMILIES`): a 3-digit SMTP reply for ``mail``, a 5-digit Twilio error
(2xxxx, 3xxxx) for ``twilio``, an HTTP status (``429``, ``HTTP 401``) for the
others; else words in a provider's own error id (``token_expired``,
:data:`WORDS`). A provider's id kept with the HTTP status it came with
(``M_UNKNOWN HTTP 500``, ``app.post.save.app_error HTTP 500``) is read by the id's
row, else by that status (the one HTTP rule), else by the id's words. Else 不明:
only a code no row or family knows.

*Records without a code* (written before codes existed): the code is inferred
from the outcome and, as a last resort, the reason text
(:func:`infer_code`): ``lost`` not seen → ``not_seen``, ``rejected`` rate limited →
``rate_limited``, an ``error`` cut by a signal → ``interrupted``; else a code the text
names (``HTTP 401``, ``SMTP 535``, a known id such as ``invalid_auth``); else ``lost`` →
``unreachable``, ``error`` of the observer → ``observer``, other ``error`` →
``harness``. A refusal that names no code is ``rejected``: not a code but its
absence (a probe's refusal always carries one now, a test scans ``probes/``), so
it is 不明 — the same when an old journal stored ``rejected`` itself, unless its
reason text names a status.

    >>> classify_failure("rejected", "invalid_auth", "slack").label("ja")
    '送信・認証・権限'
    >>> classify_failure("lost", "not_seen", "mail")
    Failure(stage=<Stage.TRANSIT: 'transit'>, cause=<Cause.CONNECTION: 'connection'>)
    >>> classify_failure("rejected", "429", "webhook").cause, classify_failure("rejected", "451", "mail").cause
    (<Cause.CONGESTION: 'congestion'>, <Cause.CONGESTION: 'congestion'>)
    >>> classify_failure("error", "observer_is_sender", "matrix").stage
    <Stage.REGISTRY: 'registry'>
    >>> classify_failure("late", None, "twilio").label("en"), classify_failure("delivered", None, "mail")
    ('transit · delay', None)
"""

from __future__ import annotations

import enum
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from drills.core.delivery import Outcome

__all__ = [
    "CAUSE_LABELS",
    "FAMILIES",
    "KNOWN_CODES",
    "NOT_JUDGED_LABELS",
    "NO_CODE",
    "RULES",
    "STAGE_LABELS",
    "WORDS",
    "Cause",
    "Failure",
    "NotJudged",
    "Rule",
    "Stage",
    "classify_delivery",
    "classify_failure",
    "infer_code",
    "is_known",
    "main_failure",
    "rules_markdown",
]


class Stage(enum.StrEnum):
    """Where the chain broke (in the order a message travels)."""

    REGISTRY = "registry"
    SEND = "send"
    TRANSIT = "transit"
    FAR_END = "far_end"


class Cause(enum.StrEnum):
    """Why it broke."""

    AUTH = "auth"
    CONFIG = "config"
    CONNECTION = "connection"
    CONGESTION = "congestion"
    DELAY = "delay"
    UNKNOWN = "unknown"


STAGE_LABELS: dict[Stage, tuple[str, str]] = {
    Stage.REGISTRY: ("登録・設定", "registry/config"),
    Stage.SEND: ("送信", "send"),
    Stage.TRANSIT: ("伝達経路", "transit"),
    Stage.FAR_END: ("受け手側の確認", "far end"),
}
CAUSE_LABELS: dict[Cause, tuple[str, str]] = {
    Cause.AUTH: ("認証・権限", "auth"),
    Cause.CONFIG: ("設定誤り", "misconfiguration"),
    Cause.CONNECTION: ("接続不良", "bad connection"),
    Cause.CONGESTION: ("混雑・制限", "congestion/rate limit"),
    Cause.DELAY: ("遅延", "delay"),
    Cause.UNKNOWN: ("不明", "unknown"),
}


class NotJudged(enum.StrEnum):
    """A record the drill could not judge (not a failure of the channel: nothing is known of it)."""

    HARNESS = "harness"
    INTERRUPTED = "interrupted"

    def label(self, lang: str = "ja") -> str:
        return NOT_JUDGED_LABELS[self][0 if lang == "ja" else 1]


NOT_JUDGED_LABELS: dict[NotJudged, tuple[str, str]] = {
    NotJudged.HARNESS: ("ハーネス障害", "harness fault"),
    NotJudged.INTERRUPTED: ("中断", "interrupted"),
}
_NOT_JUDGED_MEANING: dict[NotJudged, str] = {
    NotJudged.HARNESS: "ハーネス自体の障害。チャネルについては何も分からない / "
    "the harness itself failed: nothing is known of the channel",
    NotJudged.INTERRUPTED: "シグナルで中断（送信済み・結果不明） / cut by a signal (sent, fate unknown)",
}


@dataclass(frozen=True, slots=True)
class Failure:
    """A stage and a cause; ``str`` is ``"stage/cause"`` (the metric labels)."""

    stage: Stage
    cause: Cause

    def __str__(self) -> str:
        return f"{self.stage}/{self.cause}"

    def label(self, lang: str = "ja") -> str:
        i = 0 if lang == "ja" else 1
        sep = "・" if lang == "ja" else " · "
        return f"{STAGE_LABELS[self.stage][i]}{sep}{CAUSE_LABELS[self.cause][i]}"


@dataclass(frozen=True, slots=True)
class Rule:
    """One known reason code: its cause, its fixed stage (None: by outcome) and meaning."""

    code: str
    cause: Cause
    stage: Stage | None
    ja: str
    en: str


_A, _F, _N, _G, _U = Cause.AUTH, Cause.CONFIG, Cause.CONNECTION, Cause.CONGESTION, Cause.UNKNOWN
_R, _T = Stage.REGISTRY, Stage.TRANSIT

# (codes, cause, fixed stage, ja, en) — one row per meaning; docs/failures.md shows this table.
# fmt: off
_ROWS: tuple[tuple[str, Cause, Stage | None, str, str], ...] = (
    # -- the harness's own codes (drills.core.reasons, drills.core.runner)
    ("not_seen", _N, _T, "受付後、待機時間内に着信を確認できず", "accepted, not seen within the wait"),
    ("send_timeout", _N, None, "送信がタイムアウト", "the send timed out"),
    ("unanswered", _N, None, "送信が手順の制限時間内に応答なし", "the send got no answer in time"),
    ("unreachable", _N, None, "事業者に接続できない（コードなし）", "provider unreachable (no code)"),
    ("rate_limited", _G, None, "制限時間までレート制限が続いた", "rate limited until the timeout"),
    ("observer", _N, None, "観測側が停止（コードなし）", "the observer stopped (no code)"),
    ("observer_trouble", _N, None, "観測側が見られない間に未確認", "unseen while the observer could not look"),
    ("secret", _F, _R, "秘密情報の参照先がない", "a secret reference points at nothing"),
    ("sharing", _F, _R, "共有の検査で拒否", "refused by the sharing check"),
    ("drill_outage", _N, _T, "訓練で停止させたチャネル", "the drill's own outage"),
    ("over_slo", Cause.DELAY, _T, "SLO を超えて到達", "arrived after the SLO"),
    ("unregistered_recipient", _F, _R, "登録簿にない宛先", "a recipient not in the registry"),
    # -- registration / configuration found before or at opening
    ("observer_is_sender", _F, _R, "観測アカウントが送信者と同じ", "the observer is the sender"),
    ("sender_token_user observer_token_user", _F, _R, "トークンが別のアカウントのもの", "a token of another account"),
    ("encrypted_room", _F, _R, "暗号化ルームは対象外", "an end-to-end encrypted room"),
    ("starttls-not-offered", _F, _R, "STARTTLS の設定とサーバーが合わない", "STARTTLS set, not offered"),
    ("no-observer", _F, _R, "観測側が設定されていない", "no observer configured"),
    ("cost-cap balance_below_cap", _G, _R, "SMS の費用上限・残高不足", "SMS cost cap or balance"),
    ("currency number_missing number_not_sms number_status", _F, _R, "SMS アカウント・番号の設定", "SMS account or number setup"),
    # -- connections (every kind)
    ("connect timeout cut_off smtp callback", _N, None, "接続できない・応答が途中で切れた", "cannot connect, or the answer broke off"),
    ("dns", _N, None, "名前解決できない（DNS 障害またはホスト名の誤り）", "name does not resolve"),
    ("tls", _F, None, "TLS・証明書の不一致（期限切れ、名前、CA）", "TLS or certificate mismatch"),
    ("not_json balance_unreadable no_cursor", _N, None, "事業者以外（プロキシ等）が応答・応答を読めない", "something else answered (a proxy), or the answer cannot be read"),
    # -- mail
    ("auth", _A, None, "IMAP ログイン拒否", "IMAP login refused"),
    ("auth-unsupported mailbox maildir read", _F, None, "認証方式・メールボックスの設定", "auth method or mailbox setup"),
    # -- chat (Slack, Matrix, Teams, Mattermost, LINE WORKS, webhooks)
    ("invalid_auth not_authed account_inactive token_revoked token_expired", _A, None, "トークンが無効", "token refused"),
    ("missing_scope restricted_action not_in_channel", _A, None, "権限・参加が足りない", "missing scope or membership"),
    ("observer_not_in_room sender_not_in_room", _A, None, "ルームに参加していない", "not a member of the room"),
    ("M_UNKNOWN_TOKEN M_MISSING_TOKEN M_FORBIDDEN", _A, None, "Matrix の認証・権限", "Matrix auth or permission"),
    ("channel_not_found is_archived room M_NOT_FOUND client", _F, None, "チャンネル・ルームの設定", "channel or room setup"),
    ("ratelimited M_LIMIT_EXCEEDED TooManyRequests TOO_MANY_REQUESTS", _G, None, "レート制限", "rate limited"),
    ("internal_error fatal_error service_unavailable request_timeout", _N, None, "サービス側の障害", "service failure"),
    # -- Twilio (https://www.twilio.com/docs/api/errors)
    ("20003 21408 30002", _A, None, "Twilio の認証・権限・停止", "Twilio auth, permission, suspension"),
    ("20404 21211 21610 21612 21614", _F, None, "宛先・リソースの誤り", "wrong recipient or resource"),
    ("20429 14107 30022 30001", _G, None, "Twilio の流量制限・キュー", "Twilio rate limit or queue"),
    ("20500 20503", _N, None, "Twilio の障害", "Twilio failure"),
    ("30003 undelivered", _N, _T, "端末・携帯会社に届かない", "handset or carrier unreachable"),
    ("failed", _N, None, "Twilio が送出できなかった（コードなし）", "Twilio could not send it (no code)"),
    ("canceled", _F, None, "送出前に取り消された", "canceled before sending"),
    ("30004 30005 30006", _F, _T, "宛先が受けられない番号", "a number that cannot receive"),
    ("30007", _G, _T, "携帯会社のフィルタ", "carrier filtering"),
    # 30008 "Unknown error": Twilio took the message; delivery failed and the carrier gave no
    # reason (https://www.twilio.com/docs/api/errors/30008). The chain broke after the
    # provider, before the handset: transit, the carrier could not deliver.
    ("30008", _N, _T, "携帯会社が届けられず理由なし（Twilio 30008）", "the carrier could not deliver, no reason given (Twilio 30008)"),
)
# fmt: on

RULES: dict[str, Rule] = {
    code: Rule(code, cause, stage, ja, en)
    for codes, cause, stage, ja, en in _ROWS
    for code in codes.split()
}
KNOWN_CODES: frozenset[str] = frozenset(RULES)
#: What :func:`drills.core.reasons.fault_code` writes for a refusal without a code: no code.
NO_CODE = "rejected"
_NOT_JUDGED: frozenset[str] = frozenset(NotJudged)
_UNCOUNTED: frozenset[str] = frozenset(o.value for o in Outcome if not o.counted)

# Families of codes a provider sends as numbers: (name, pattern, kinds or None for the rest).
_SMTP = re.compile(r"^([245])(\d\d)(?: \d\.\d{1,3}\.\d{1,3})?$")
_HTTP = re.compile(r"^(?:HTTP )?([1-5])(\d\d)$")
_TWILIO = re.compile(r"^([1-9])\d{4}$")
_WITH_STATUS = re.compile(r"^(\S+) HTTP ([1-5]\d\d)$")
FAMILIES: tuple[tuple[str, str, str], ...] = (
    (
        "SMTP",
        "mail",
        "4xx 混雑・制限（454 認証）; 530/534/535/538 認証・権限; 552 混雑・制限; 他の 5xx 設定誤り",
    ),
    ("Twilio", "twilio", "2xxxx 設定誤り; 3xxxx 伝達経路・接続不良"),
    (
        "HTTP",
        "others; `<id> HTTP <status>` every kind",
        "401/403/407 認証・権限; 408 接続不良; 429/503/509 混雑・制限; 他の 5xx 接続不良; 3xx/4xx 設定誤り",
    ),
)
# Words in a provider's own error id (never in reason text), checked in this order.
WORDS: tuple[tuple[Cause, tuple[str, ...]], ...] = (
    (_G, ("limit", "too_many", "toomany", "throttl", "quota")),
    (_A, ("auth", "token", "session", "forbidden", "permission", "scope", "signature", "denied")),
    (_F, ("not_found", "notfound", "missing", "invalid", "archived", "account_")),
    (_N, ("unavailable", "timeout", "timed_out", "internal", "server_error", "servererror")),
)


def _smtp(code: str) -> Cause | None:
    m = _SMTP.match(code)
    if m is None:
        return None
    number = int(m.group(1) + m.group(2))
    if number == 454 or number in (530, 534, 535, 538):
        return _A
    if m.group(1) == "4" or number == 552:
        return _G
    return _F if m.group(1) == "5" else None


def _http(code: str) -> Cause | None:
    m = _HTTP.match(code)
    if m is None:
        return None
    status = int(m.group(1) + m.group(2))
    if status in (401, 403, 407):
        return _A
    if status == 408:
        return _N
    if status in (429, 503, 509):
        return _G
    if status >= 500:
        return _N
    return _F if status >= 300 else None


def _twilio(code: str) -> tuple[Cause, Stage | None] | None:
    m = _TWILIO.match(code)
    if m is None:
        return None
    return {"2": (_F, None), "3": (_N, _T)}.get(m.group(1))


def _words(code: str) -> tuple[Cause, Stage | None] | None:
    if code.startswith("account_"):  # a Twilio account's status (preflight)
        return (_A, _R)
    lowered = code.lower()
    for word_cause, words in WORDS:
        if any(w in lowered for w in words):
            return (word_cause, None)
    return None


def _family(code: str, kind: str) -> tuple[Cause, Stage | None] | None:
    """The cause (and fixed stage) of a code by its family, for *kind*."""
    with_status = _WITH_STATUS.match(code)
    if with_status is not None:  # a provider's id and the HTTP status it came with
        ident, status = with_status.groups()
        rule = RULES.get(ident)
        if rule is not None:
            return (rule.cause, rule.stage)
        cause = _http(status)
        return (cause, None) if cause is not None else _words(ident)
    if kind == "mail":
        cause = _smtp(code)
        return None if cause is None else (cause, None)
    if kind == "twilio" and _TWILIO.match(code):
        return _twilio(code)
    cause = _http(code)
    if cause is not None:
        return (cause, None)
    return _words(code)


def is_known(code: str, kind: str = "webhook") -> bool:
    """Is *code* a row of :data:`RULES` or of a family (for *kind*)?

    >>> is_known("not_in_channel"), is_known("535 5.7.8", "mail"), is_known("HTTP 404"), is_known("zz")
    (True, True, True, False)
    """
    return code in RULES or _family(code, kind) is not None


_NAMED = re.compile(r"\b(?:(?:HTTP|SMTP) (\d{3})|([A-Za-z]+_[A-Za-z_]+))\b")


def _named_code(reason: str) -> str | None:
    """A code the reason text names: ``HTTP 401``, ``SMTP 535``, or a known ``snake_case`` id.

    >>> _named_code("認証エラー / invalid_auth"), _named_code("SMTP 535 拒否 / rejected"), _named_code("x")
    ('invalid_auth', '535', None)
    """
    for m in _NAMED.finditer(reason):
        if m.group(1):
            return m.group(1)
        if m.group(2) in RULES:
            return m.group(2)
    return None


def infer_code(outcome: str, reason: str) -> str:
    """The code of a record written before codes existed (reason text: the last resort).

    >>> infer_code("lost", "10 秒以内に着信を確認できず / not seen within 10 s")
    'not_seen'
    >>> infer_code("error", "ハーネスの障害 / harness fault: KeyError: 'x'")
    'harness'
    """
    text = reason.lower()
    named = _named_code(reason)
    if outcome == "lost":
        if "not seen" in text or "no carrier receipt" in text or "着信を確認できず" in reason:
            return "not_seen"
        return named or "unreachable"
    if outcome == "rejected":
        return "rate_limited" if "rate limited" in text else named or "rejected"
    if outcome == "error":
        if "interrupted" in text or "中断" in reason:
            return "interrupted"
        if "observer" in text or "could not look" in text or "観測" in reason:
            return named or "observer"
        return "harness"
    if outcome == "drill_outage":
        return "drill_outage"
    return "over_slo" if outcome == "late" else ""


def classify_failure(
    outcome: str, code: str | None, kind: str, reason: str = ""
) -> Failure | NotJudged | None:
    """The stage and cause of a record (None: delivered or accepted, no failure).

    *code* is the record's reason code (None for old records: inferred from
    *outcome* and *reason*, :func:`infer_code`). A ``harness`` or ``interrupted``
    record that scoring does not count is :class:`NotJudged`. See the module docstring.

    >>> classify_failure("error", "harness", "slack"), classify_failure("error", None, "mail", "中断")
    (<NotJudged.HARNESS: 'harness'>, <NotJudged.INTERRUPTED: 'interrupted'>)
    >>> classify_failure("rejected", "M_UNKNOWN HTTP 500", "matrix").label("en")
    'send · bad connection'
    """
    if outcome in ("delivered", "accepted"):
        return None
    if outcome == "late":
        return Failure(_T, Cause.DELAY)
    if outcome == "drill_outage":
        return Failure(_T, _N)
    counted = outcome not in _UNCOUNTED  # scoring's own rule (Outcome.counted)
    if code is None or code == NO_CODE or (code in _NOT_JUDGED and counted):
        code = infer_code(outcome, reason)
    if code in _NOT_JUDGED and not counted:
        return NotJudged(code)
    rule = RULES.get(code)
    found = (rule.cause, rule.stage) if rule is not None else _family(code, kind)
    cause, fixed = found if found is not None else (_U, None)
    if fixed is _R or (fixed is _T and outcome in ("lost", "rejected")):
        return Failure(fixed, cause)
    if outcome == "error":
        return Failure(Stage.FAR_END, cause)
    return Failure(Stage.SEND, cause)


def classify_delivery(
    outcome: str, kind: str, reason: str, extra: Mapping[str, Any]
) -> Failure | NotJudged | None:
    """:func:`classify_failure` of a record's fields (``extra["reason_code"]``)."""
    code = extra.get("reason_code")
    return classify_failure(outcome, code if isinstance(code, str) else None, kind, reason)


def main_failure(pairs: Iterable[tuple[str, str]]) -> tuple[str, str] | None:
    """The main (stage, cause) of several: the most frequent, a tie to the earlier stage.

    >>> main_failure([("transit", "connection"), ("send", "auth"), ("transit", "connection")])
    ('transit', 'connection')
    >>> main_failure([("transit", "connection"), ("send", "auth")]), main_failure([])
    (('send', 'auth'), None)
    """
    counts = Counter(pairs)
    if not counts:
        return None
    stages, causes = list(Stage), list(Cause)
    return min(
        counts,
        key=lambda k: (-counts[k], stages.index(Stage(k[0])), causes.index(Cause(k[1]))),
    )


def rules_markdown() -> str:
    """The rules table of ``docs/failures.md`` (kept equal to the code by a test)."""
    lines = [
        "| code | stage | cause | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for codes, cause, stage, ja, en in _ROWS:
        where = "by outcome" if stage is None else f"{STAGE_LABELS[stage][0]} {stage.value}"
        shown = ", ".join(f"`{c}`" for c in codes.split())
        lines.append(
            f"| {shown} | {where} | {CAUSE_LABELS[cause][0]} {cause.value} | {ja} / {en} |"
        )
    lines += ["", "| family | kinds | rules |", "| --- | --- | --- |"]
    lines += [f"| {name} | {kinds} | {rules} |" for name, kinds, rules in FAMILIES]
    lines += ["", "| not judged (`error` only) | 判定不能 | meaning |", "| --- | --- | --- |"]
    lines += [
        f"| `{c.value}` | {NOT_JUDGED_LABELS[c][0]} | {_NOT_JUDGED_MEANING[c]} |" for c in NotJudged
    ]
    return "\n".join(lines)
