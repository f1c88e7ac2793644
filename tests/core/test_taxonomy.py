"""The failure taxonomy's rules (drills.core.taxonomy): every code, outcome and kind.

Cheap and pure: every outcome × every known reason code × every channel kind lands in
a stage and a cause, and none falls to 不明; ``harness`` and ``interrupted`` are not
judged, exactly where scoring does not count the record; every code written in probes/
and drills/ is known, and every refusal a probe makes carries a code (both found with
``ast``, so a new code or an uncoded raise cannot silently fall to 不明); the doc's table
is the code's, and the runner's boundary carries the code from the exception to the record.
"""

from __future__ import annotations

import ast
import socket
import ssl
from pathlib import Path

import aiohttp
import pytest

from drills.core.delivery import Outcome
from drills.core.reasons import fault_code, fault_outcome
from drills.core.taxonomy import (
    KNOWN_CODES,
    NO_CODE,
    RULES,
    Cause,
    Failure,
    NotJudged,
    Stage,
    classify_failure,
    infer_code,
    is_known,
    main_failure,
    rules_markdown,
)
from probes.base import (
    ChannelRejected,
    ChannelUnreachable,
    ObserverFault,
    ObserverIsSender,
    ProbeError,
)
from probes.faultcodes import transport_code
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


def _probe_error_classes(trees: dict[Path, ast.Module]) -> dict[str, bool]:
    """Every ProbeError subclass defined in *trees*: name → does a caller give its code?

    False when the class's own ``__init__`` takes no ``code`` (it sets its own, as
    ``CostCapExceeded``); an ``__init__`` it inherits decides otherwise.
    """
    bases: dict[str, list[str]] = {}
    own_code: dict[str, bool] = {}
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                names = [
                    b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases
                ]
                bases[node.name] = names
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                        params = [a.arg for a in (*item.args.args, *item.args.kwonlyargs)]
                        own_code[node.name] = "code" in params
    found: dict[str, bool] = {"ProbeError": True}
    changed = True
    while changed:
        changed = False
        for name, parents in bases.items():
            parent = next((p for p in parents if p in found), None)
            if name not in found and parent is not None:
                found[name] = own_code.get(name, found[parent])
                changed = True
    return found


def uncoded_probe_errors(sources: dict[Path, str]) -> list[str]:
    """Every construction of a ProbeError subclass without a ``code=`` (or with None / "")."""
    trees = {path: ast.parse(text) for path, text in sources.items()}
    classes = _probe_error_classes(trees)
    missing = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name not in classes or not classes[name]:
                continue
            code = next((kw.value for kw in node.keywords if kw.arg == "code"), None)
            if code is None or (isinstance(code, ast.Constant) and not code.value):
                missing.append(f"{path}:{node.lineno} {name}")
    return missing


def _probe_sources() -> dict[Path, str]:
    base = ROOT / "probes"
    return {p.relative_to(ROOT): p.read_text(encoding="utf-8") for p in sorted(base.rglob("*.py"))}


def test_every_refusal_a_probe_raises_carries_its_own_code() -> None:
    sources = _probe_sources()
    classes = _probe_error_classes({p: ast.parse(t) for p, t in sources.items()})
    # the scan finds the classes, those that set their own code too
    assert {"ChannelRejected", "ChannelUnreachable", "ObserverFault", "AnswerCutOff"} <= set(
        classes
    )
    assert classes["CostCapExceeded"] is False and classes["PhaseFailure"] is True
    missing = uncoded_probe_errors(sources)
    assert not missing, f"give each a specific code= (and a row in drills.core.taxonomy): {missing}"


def test_the_raise_scan_would_catch_an_uncoded_raise() -> None:
    source = (
        "from probes.base import ChannelUnreachable, ObserverFault\n"
        "class Mine(ObserverFault):\n    pass\n"
        "def f(x):\n"
        "    raise ChannelUnreachable('x / x')\n"
        "def g():\n    return Mine('y', code=None)\n"
        "def h(c):\n    raise ChannelUnreachable('z', code=c)\n"
    )
    sources = {**_probe_sources(), Path("probes/new.py"): source}
    assert uncoded_probe_errors(sources) == [
        "probes/new.py:5 ChannelUnreachable",
        "probes/new.py:7 Mine",
    ]


def test_every_code_written_in_the_sources_is_known_and_not_unknown() -> None:
    codes = literal_codes()
    assert len(codes) > 30  # the scan finds them (it has teeth)
    not_judged = {c.value for c in NotJudged}
    unknown = {
        c: where
        for c, where in codes.items()
        if not is_known(c, "mail" if " " in c else "webhook") and c not in not_judged
    }
    assert not unknown, f"add these codes to drills.core.taxonomy RULES: {unknown}"
    for code, where in codes.items():
        kind = "mail" if code[:1].isdigit() and " " in code else "webhook"
        f = classify_failure("error", code, kind)
        if code in not_judged:
            assert f == NotJudged(code), (code, where)
            continue
        assert isinstance(f, Failure) and f.cause is not Cause.UNKNOWN, (code, where)


def test_the_scan_would_catch_a_new_code() -> None:
    assert not is_known("some_new_code_nobody_classified")
    assert classify_failure("rejected", "zzz", "webhook") == Failure(Stage.SEND, Cause.UNKNOWN)


def test_no_known_code_is_unknown() -> None:
    assert [r.code for r in RULES.values() if r.cause is Cause.UNKNOWN] == []
    assert NO_CODE not in KNOWN_CODES and not set(NotJudged) & KNOWN_CODES


@pytest.mark.parametrize("outcome", FAILING, ids=str)
@pytest.mark.parametrize("kind", KINDS)
def test_every_known_code_lands_in_a_stage_and_cause(outcome: Outcome, kind: str) -> None:
    for code in sorted(KNOWN_CODES):
        f = classify_failure(outcome.value, code, kind)
        assert isinstance(f, Failure) and f.stage in Stage and f.cause in Cause, (code, f)
        if outcome is Outcome.LATE:
            assert f == Failure(Stage.TRANSIT, Cause.DELAY)
        elif outcome is Outcome.DRILL_OUTAGE:
            assert f == Failure(Stage.TRANSIT, Cause.CONNECTION)
        else:
            assert isinstance(f, Failure) and f.cause is not Cause.UNKNOWN, (code, f)
            assert f.cause is RULES[code].cause
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
        # a provider's id with its HTTP status: the id's row, else the status, else its words
        ("M_UNKNOWN HTTP 500", "matrix", Cause.CONNECTION),
        ("M_UNKNOWN HTTP 400", "matrix", Cause.CONFIG),
        ("M_UNKNOWN HTTP 403", "matrix", Cause.AUTH),
        ("M_UNKNOWN HTTP 429", "matrix", Cause.CONGESTION),
        ("M_FORBIDDEN HTTP 403", "matrix", Cause.AUTH),
        ("M_NOT_FOUND HTTP 404", "matrix", Cause.CONFIG),
        ("app.post.save.app_error HTTP 500", "mattermost", Cause.CONNECTION),
        ("app.post.create_post.app_error HTTP 400", "mattermost", Cause.CONFIG),
        ("api.context.session_expired.app_error HTTP 401", "mattermost", Cause.AUTH),
        ("INTERNAL_SERVER_ERROR HTTP 500", "lineworks", Cause.CONNECTION),
        ("invalid_client HTTP 401", "teams", Cause.AUTH),  # the words alone say 設定誤り
        ("BadRequest HTTP 400", "teams", Cause.CONFIG),
        ("internal_error HTTP 200", "slack", Cause.CONNECTION),  # a 2xx says nothing: the row
        ("weird_thing HTTP 200", "slack", Cause.UNKNOWN),
    ],
)
def test_families(code: str, kind: str, cause: Cause) -> None:
    f = classify_failure("rejected", code, kind)
    assert f is not None and f.cause is cause, (code, kind, f)


def test_a_generic_id_without_its_status_is_not_a_known_code() -> None:
    assert not is_known("M_UNKNOWN", "matrix") and not is_known("app.post.save.app_error")
    assert is_known("M_UNKNOWN HTTP 502", "matrix") and not is_known("40001", "twilio")


def test_twilio_30008_is_the_carrier_not_delivering() -> None:
    # Twilio: "Unknown error" — accepted, then the carrier did not deliver and gave no reason.
    for outcome in ("rejected", "lost"):
        assert classify_failure(outcome, "30008", "twilio") == Failure(
            Stage.TRANSIT, Cause.CONNECTION
        )


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
        ("rejected", "拒否 / refused", NO_CODE),
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


def test_a_stored_rejected_is_no_code_and_read_by_the_status_its_reason_names() -> None:
    reason = "HTTP 401: x（拒否） / HTTP 401: x (refused)"
    assert classify_failure("rejected", NO_CODE, "webhook", reason) == Failure(
        Stage.SEND, Cause.AUTH
    )
    assert classify_failure("rejected", NO_CODE, "webhook", "拒否 / refused") == Failure(
        Stage.SEND, Cause.UNKNOWN
    )


@pytest.mark.parametrize("outcome", list(Outcome), ids=str)
@pytest.mark.parametrize("code", [*NotJudged, None])
def test_not_judged_exactly_where_scoring_does_not_count(
    outcome: Outcome, code: NotJudged | None
) -> None:
    reasons = {None: "ハーネスの障害 / harness fault: KeyError: 'x'"}
    f = classify_failure(outcome.value, code, "webhook", reasons.get(code, ""))
    if outcome in (Outcome.DELIVERED, Outcome.ACCEPTED):
        assert f is None
    elif outcome is Outcome.ERROR:
        assert f == NotJudged(code or "harness")
    else:  # counted by scoring (or the drill's own outage, late): judged by its outcome
        assert isinstance(f, Failure), (outcome, code, f)
        if outcome is not Outcome.REJECTED:  # a refusal that names no code at all is 不明
            assert f.cause is not Cause.UNKNOWN, (outcome, code, f)
    assert isinstance(f, NotJudged) <= (not outcome.counted)


def test_the_runner_boundary_gives_not_judged_codes_only_to_error_records() -> None:
    def raised_from(exc: Exception, cause: BaseException) -> Exception:
        exc.__cause__ = cause
        return exc

    faults: list[BaseException] = [
        KeyError("bug"),
        ProbeError("x"),
        TimeoutError(),
        ChannelRejected("x", code="invalid_auth"),
        ChannelUnreachable("x", code="connect"),
        ObserverFault("x", code="harness"),
        raised_from(ChannelUnreachable("x"), TimeoutError()),
    ]
    for exc in faults:
        for sending in (False, True):
            code = fault_code(exc, sending)
            outcome, reason = fault_outcome(exc, sending)
            f = classify_failure(outcome.value, code, "webhook", reason)
            assert isinstance(f, NotJudged) == (code in set(NotJudged)), (exc, code, f)
            if code in set(NotJudged):
                assert outcome is Outcome.ERROR and not outcome.counted


def test_transport_codes_from_what_a_send_was_raised_from() -> None:
    def raised_from(exc: Exception, cause: BaseException) -> Exception:
        exc.__cause__ = cause
        return exc

    assert transport_code(aiohttp.ServerDisconnectedError()) == "cut_off"
    assert transport_code(raised_from(OSError("x"), socket.gaierror())) == "dns"
    assert transport_code(raised_from(aiohttp.ClientError(), ssl.SSLError())) == "tls"
    assert transport_code(aiohttp.ServerTimeoutError()) == "timeout"
    assert transport_code(ConnectionRefusedError()) == "connect"
    for code in ("cut_off", "dns", "tls", "timeout", "connect"):
        assert code in KNOWN_CODES


def test_fault_code_carries_the_probe_code_or_a_default_by_class() -> None:
    def raised_from(exc: Exception, cause: BaseException) -> Exception:
        exc.__cause__ = cause
        return exc

    assert fault_code(ChannelRejected("x", code="invalid_auth")) == "invalid_auth"
    assert fault_code(ObserverIsSender.of("c", "@me")) == "observer_is_sender"
    assert fault_code(ChannelRejected("x")) == NO_CODE  # no code at all
    assert fault_code(ChannelUnreachable("x")) == "unreachable"
    assert fault_code(ObserverFault("x")) == "observer"
    assert fault_code(raised_from(ChannelUnreachable("x"), TimeoutError())) == "timeout"
    assert fault_code(raised_from(ChannelUnreachable("x"), ConnectionResetError())) == "connect"
    assert fault_code(raised_from(ChannelUnreachable("x"), ssl.SSLError())) == "tls"
    assert fault_code(raised_from(ObserverFault("x"), SecretUnresolvable("a", "b"))) == "secret"
    assert fault_code(TimeoutError(), sending=True) == "send_timeout"
    assert fault_code(KeyError("bug")) == "harness"
    for code in ("unreachable", "observer", "timeout", "connect", "tls", "secret"):
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
    import probes.faultcodes

    modules = (
        drills.core.taxonomy,
        drills.core.reasons,
        drills.reporting.failures,
        probes.faultcodes,
    )
    for module in modules:
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
