"""The failure taxonomy's rules (drills.core.taxonomy): every code, outcome and kind.

Cheap and pure: every outcome × every known reason code × every channel kind lands in
a stage and a cause, none falls to 不明 but the four documented ones, every code
written in probes/ and drills/ is known (found with ``ast``, so a new code cannot
silently fall to 不明), the doc's table is the code's, and the runner's boundary
carries the code from the exception to the record.
"""

from __future__ import annotations

import ast
import ssl
from pathlib import Path

import pytest

from drills.core.delivery import Outcome
from drills.core.reasons import fault_code
from drills.core.taxonomy import (
    KNOWN_CODES,
    RULES,
    UNKNOWN_BY_RULE,
    Cause,
    Failure,
    Stage,
    classify_failure,
    infer_code,
    is_known,
    main_failure,
    rules_markdown,
)
from probes.base import ChannelRejected, ChannelUnreachable, ObserverFault, ObserverIsSender
from probes.settings import SecretUnresolvable

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("mail", "twilio", "webhook", "slack", "teams", "mattermost", "lineworks", "matrix")
FAILING = [o for o in Outcome if o not in (Outcome.DELIVERED, Outcome.ACCEPTED)]


def literal_codes() -> dict[str, str]:
    """Every ``code="…"`` (a keyword argument with a string literal) in probes/ and drills/."""
    found: dict[str, str] = {}
    for base in ("probes", "drills"):
        for path in sorted((ROOT / base).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                for kw in node.keywords:
                    if (
                        kw.arg == "code"
                        and isinstance(kw.value, ast.Constant)
                        and isinstance(kw.value.value, str)
                    ):
                        found[kw.value.value] = f"{path.relative_to(ROOT)}:{kw.value.lineno}"
    return found


def test_every_code_written_in_the_sources_is_known_and_not_unknown() -> None:
    codes = literal_codes()
    assert len(codes) > 30  # the scan finds them (it has teeth)
    unknown = {
        c: where for c, where in codes.items() if not is_known(c, "mail" if " " in c else "webhook")
    }
    assert not unknown, f"add these codes to drills.core.taxonomy RULES: {unknown}"
    for code, where in codes.items():
        kind = "mail" if code[:1].isdigit() and " " in code else "webhook"
        f = classify_failure("rejected", code, kind)
        assert f is not None
        assert f.cause is not Cause.UNKNOWN or code in UNKNOWN_BY_RULE, (code, where)


def test_the_scan_would_catch_a_new_code() -> None:
    assert not is_known("some_new_code_nobody_classified")
    assert classify_failure("rejected", "zzz", "webhook") == Failure(Stage.SEND, Cause.UNKNOWN)


def test_only_the_documented_codes_are_unknown_by_rule() -> None:
    assert UNKNOWN_BY_RULE == {"harness", "interrupted", "rejected", "30008"}


@pytest.mark.parametrize("outcome", FAILING, ids=str)
@pytest.mark.parametrize("kind", KINDS)
def test_every_known_code_lands_in_a_stage_and_cause(outcome: Outcome, kind: str) -> None:
    for code in sorted(KNOWN_CODES):
        f = classify_failure(outcome.value, code, kind)
        assert isinstance(f, Failure) and f.stage in Stage and f.cause in Cause
        if outcome is Outcome.LATE:
            assert f == Failure(Stage.TRANSIT, Cause.DELAY)
        elif outcome is Outcome.DRILL_OUTAGE:
            assert f == Failure(Stage.TRANSIT, Cause.CONNECTION)
        else:
            assert (f.cause is Cause.UNKNOWN) == (code in UNKNOWN_BY_RULE), (code, f)
            rule = RULES[code]
            if rule.stage is Stage.REGISTRY:
                assert f.stage is Stage.REGISTRY
            elif outcome is Outcome.ERROR:
                assert f.stage is Stage.FAR_END
            elif rule.stage is Stage.TRANSIT:
                assert f.stage is Stage.TRANSIT
            else:
                assert f.stage is Stage.SEND


def test_delivered_and_accepted_are_no_failure() -> None:
    for kind in KINDS:
        assert classify_failure("delivered", "over_slo", kind) is None
        assert classify_failure("accepted", None, kind) is None


@pytest.mark.parametrize(
    ("code", "kind", "cause"),
    [
        # HTTP (every kind but mail), bare or "HTTP nnn"
        ("401", "webhook", Cause.AUTH),
        ("HTTP 403", "teams", Cause.AUTH),
        ("HTTP 404", "lineworks", Cause.CONFIG),
        ("408", "webhook", Cause.CONNECTION),
        ("429", "mattermost", Cause.CONGESTION),
        ("503", "webhook", Cause.CONGESTION),
        ("500", "webhook", Cause.CONNECTION),
        ("401", "twilio", Cause.AUTH),
        # SMTP (mail): 4xx deferrals, 5xx refusals, with enhanced codes
        ("451", "mail", Cause.CONGESTION),
        ("451 4.7.1", "mail", Cause.CONGESTION),
        ("454", "mail", Cause.AUTH),
        ("535", "mail", Cause.AUTH),
        ("535 5.7.8", "mail", Cause.AUTH),
        ("550", "mail", Cause.CONFIG),
        ("552", "mail", Cause.CONGESTION),
        # Twilio errors not in the table, by range
        ("21999", "twilio", Cause.CONFIG),
        ("30999", "twilio", Cause.CONNECTION),
        # a provider's own error ids, by their words
        ("api.context.session_expired.app_error", "mattermost", Cause.AUTH),
        ("DirectApiInvalidAuthorizationSignature", "teams", Cause.AUTH),
        ("UNAUTHORIZED", "lineworks", Cause.AUTH),
        ("account_suspended", "twilio", Cause.AUTH),
        ("InternalServerError", "teams", Cause.CONNECTION),
        ("INTERNAL_SERVER_ERROR", "lineworks", Cause.CONNECTION),
        ("M_UNKNOWN", "matrix", Cause.UNKNOWN),  # the code alone does not say
        ("app.post.save.app_error", "mattermost", Cause.UNKNOWN),
    ],
)
def test_families(code: str, kind: str, cause: Cause) -> None:
    f = classify_failure("rejected", code, kind)
    assert f is not None and f.cause is cause, (code, kind, f)


def test_carrier_verdicts_after_acceptance_are_transit() -> None:
    assert classify_failure("rejected", "30003", "twilio") == Failure(
        Stage.TRANSIT, Cause.CONNECTION
    )
    assert classify_failure("rejected", "30997", "twilio") == Failure(
        Stage.TRANSIT, Cause.CONNECTION
    )
    assert classify_failure("error", "30003", "twilio") == Failure(Stage.FAR_END, Cause.CONNECTION)


@pytest.mark.parametrize(
    ("outcome", "reason", "code"),
    [
        ("lost", "10 秒以内に着信を確認できず / not seen within 10 s", "not_seen"),
        ("lost", "受信報告なし / no carrier receipt (still 'sent')", "not_seen"),
        ("lost", "SMTP 接続失敗 / cannot connect", "unreachable"),
        ("rejected", "認証エラー / invalid_auth", "invalid_auth"),
        ("rejected", "HTTP 401: x（拒否） / HTTP 401: x (refused)", "401"),
        (
            "rejected",
            "レート制限 / rate limited 3 times (429) until the step's 2 s timeout",
            "rate_limited",
        ),
        ("rejected", "拒否 / refused", "rejected"),
        ("error", "観測できません: x / observer failed: x", "observer"),
        ("error", "送信済み・中断 / interrupted", "interrupted"),
        ("error", "ハーネスの障害 / harness fault: KeyError: 'x'", "harness"),
    ],
)
def test_old_records_are_classified_from_outcome_then_reason(
    outcome: str, reason: str, code: str
) -> None:
    assert infer_code(outcome, reason) == code
    assert classify_failure(outcome, None, "webhook", reason) == classify_failure(
        outcome, code, "webhook"
    )


def test_fault_code_carries_the_probe_code_or_a_default_by_class() -> None:
    def raised_from(exc: Exception, cause: BaseException) -> Exception:
        exc.__cause__ = cause
        return exc

    assert fault_code(ChannelRejected("x", code="invalid_auth")) == "invalid_auth"
    assert fault_code(ObserverIsSender.of("c", "@me")) == "observer_is_sender"
    assert fault_code(ChannelRejected("x")) == "rejected"
    assert fault_code(ChannelUnreachable("x")) == "unreachable"
    assert fault_code(ObserverFault("x")) == "observer"
    assert fault_code(raised_from(ChannelUnreachable("x"), TimeoutError())) == "timeout"
    assert fault_code(raised_from(ChannelUnreachable("x"), ConnectionResetError())) == "connect"
    assert fault_code(raised_from(ChannelUnreachable("x"), ssl.SSLError())) == "tls"
    assert fault_code(raised_from(ObserverFault("x"), SecretUnresolvable("a", "b"))) == "secret"
    assert fault_code(TimeoutError(), sending=True) == "send_timeout"
    assert fault_code(KeyError("bug")) == "harness"
    for code in ("rejected", "unreachable", "observer", "timeout", "connect", "tls", "secret"):
        assert code in KNOWN_CODES


def test_main_failure_is_the_most_frequent_then_the_earlier_stage() -> None:
    pairs = [("transit", "connection"), ("send", "auth"), ("send", "auth")]
    assert main_failure(pairs) == ("send", "auth")
    assert main_failure([("far_end", "unknown"), ("registry", "config")]) == ("registry", "config")


def test_labels_are_bilingual_japanese_first() -> None:
    f = Failure(Stage.SEND, Cause.AUTH)
    assert (f.label("ja"), f.label("en"), str(f)) == (
        "送信・認証・権限",
        "send · auth",
        "send/auth",
    )


def test_the_doc_table_is_the_code_table() -> None:
    doc = (ROOT / "docs" / "failures.md").read_text(encoding="utf-8")
    table = doc.split("<!-- rules:begin -->\n")[1].split("<!-- rules:end -->")[0]
    assert table.strip() == rules_markdown().strip(), (
        "docs/failures.md is stale: paste drills.core.taxonomy.rules_markdown()"
    )


def test_docstring_examples_run() -> None:
    import doctest

    import drills.core.reasons
    import drills.core.taxonomy
    import drills.reporting.failures

    for module in (drills.core.taxonomy, drills.core.reasons, drills.reporting.failures):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
