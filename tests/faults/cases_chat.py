"""Fault matrix, chat rows: every chat kind × 429, 401, 5xx, reset, not JSON, observer expiry.

Each case is one drill (``tests/faults/simdrill.py``: the operator API over a file
journal, checked for no traceback, an intact journal, a ``finished`` run, bilingual
reasons and agreement with the simulator's ledger) over one simulated channel of the
kind, with one fault injected through the simulator's hook (:class:`probes.sim.faults.Fault`),
answered in the kind's own words (Slack's ``{"ok": false, "error": …}``, Graph's
``{"error": {"code": …}}``, Matrix's ``errcode`` …).

What each fault must become (README "Reliability / 信頼性")::

    429 once (wait 1 s,        delivered, throttled 1, accepted no sooner than the wait
      Matrix 300 ms)
    401 on every send          rejected, the service's code in the reason
    500 on every send          rejected (temporary), the status or code in the reason
    reset mid-response         delivered: the far end took it, the answer was cut off;
                               the probe waits for its observer instead of guessing
    not JSON (an HTML page)    lost, "the answer was not <service>'s" (webhook: any 2xx
                               is an acceptance, so lost as not seen)
    observer reads not JSON    error "the drill could not look" (it did arrive: the
                               ledger says visible), never lost
    observer token expires     2nd step: error "the drill could not look" (static tokens:
                               webhook, slack, mattermost, matrix); delivered again where
                               the probe renews short-lived tokens (teams, lineworks)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from drills.core.delivery import Outcome
from probes.sim.faults import Fault
from tests.faults.matrix import FaultCase
from tests.faults.simdrill import SimDrill, sim_drill

__all__ = ["CASES"]

KINDS = ("webhook", "slack", "teams", "mattermost", "lineworks", "matrix")
STEP_S = 2.5  # each step's timeout: every fault here settles well inside it
WAIT_S = 1  # the Retry-After of the injected 429


def registry(kind: str) -> str:
    return f"""\
defaults:
  slo: {{latency: 2s}}
municipalities:
  - code: "131211"
    name: 足立区
    channels:
      - id: chat
        kind: {kind}
        request_timeout: 2s
        sim: {{latency: 30ms}}
"""


def _j(body: dict[str, Any]) -> str:
    return json.dumps(body)


# The kind's own 429 / 401 / 500 answers (headers, body) — what its service sends.
THROTTLE: dict[str, tuple[dict[str, str], str]] = {
    "webhook": ({"Retry-After": str(WAIT_S)}, _j({"ok": False, "error": "ratelimited"})),
    "slack": ({"Retry-After": str(WAIT_S)}, _j({"ok": False, "error": "ratelimited"})),
    "teams": (
        {"Retry-After": str(WAIT_S)},
        _j({"error": {"code": "TooManyRequests", "message": "Rate limit is exceeded."}}),
    ),
    "mattermost": (
        {"Retry-After": str(WAIT_S), "X-RateLimit-Reset": str(WAIT_S)},
        "limit exceeded\n",
    ),
    "lineworks": (
        {"rateLimit-reset": str(WAIT_S)},
        _j({"code": "TOO_MANY_REQUESTS", "description": "API rate limit exceeded"}),
    ),
    "matrix": (
        {},
        _j({"errcode": "M_LIMIT_EXCEEDED", "error": "Too Many Requests", "retry_after_ms": 300}),
    ),
}
UNAUTHORIZED: dict[str, tuple[str, str]] = {  # body, the code the reason must name
    "webhook": (_j({"ok": False, "error": "invalid_auth"}), "invalid_auth"),
    "slack": (_j({"ok": False, "error": "invalid_auth"}), "invalid_auth"),
    "teams": (
        _j({"error": {"code": "DirectApiInvalidAuthorizationSignature", "message": "…"}}),
        "DirectApiInvalidAuthorizationSignature",
    ),
    "mattermost": (
        _j(
            {
                "id": "api.context.session_expired.app_error",
                "message": "Invalid or expired session, please login again.",
                "status_code": 401,
            }
        ),
        "api.context.session_expired.app_error",
    ),
    "lineworks": (
        _j({"code": "UNAUTHORIZED", "description": "Authentication failed"}),
        "UNAUTHORIZED",
    ),
    "matrix": (
        _j({"errcode": "M_UNKNOWN_TOKEN", "error": "Invalid access token passed."}),
        "M_UNKNOWN_TOKEN",
    ),
}
SERVER_ERROR: dict[str, tuple[str, str]] = {
    "webhook": (_j({"ok": False, "error": "internal_error"}), "500"),
    "slack": (_j({"ok": False, "error": "internal_error"}), "internal_error"),
    "teams": (
        _j({"error": {"code": "InternalServerError", "message": "…"}}),
        "InternalServerError",
    ),
    "mattermost": (
        _j(
            {
                "id": "app.post.save.app_error",
                "message": "Unable to save the post.",
                "status_code": 500,
            }
        ),
        "app.post.save.app_error",
    ),
    "lineworks": (
        _j({"code": "INTERNAL_SERVER_ERROR", "description": "Internal server error"}),
        "INTERNAL_SERVER_ERROR",
    ),
    "matrix": (_j({"errcode": "M_UNKNOWN", "error": "Internal server error"}), "M_UNKNOWN"),
}
KEY = "131211/chat"


def _inject(run: SimDrill, fault: Fault) -> Fault:
    """Arm *fault* on the channel's simulator (on the drill's loop, where it serves)."""
    sim = run.sim("chat")
    return run.on_loop(lambda: sim.inject(KEY, fault))


def case_429(kind: str, tmp_path: Path) -> None:
    headers, body = THROTTLE[kind]
    with sim_drill(tmp_path, registry(kind)) as run:
        fault = _inject(run, Fault("send", "status", 429, body, headers))
        run.broadcast(STEP_S)
    d = run.one()
    assert d.outcome is Outcome.DELIVERED, (d.outcome, d.reason)
    assert fault.hits == 1 and d.throttled == 1, (fault.hits, d.throttled)
    wait = 0.3 if kind == "matrix" else WAIT_S  # Matrix says retry_after_ms
    assert d.accept_latency_s is not None and d.accept_latency_s >= wait, d.accept_latency_s
    e = run.entry(d)
    assert e is not None and e.refusals == 1 and e.visible_at is not None, e


def case_401(kind: str, tmp_path: Path) -> None:
    body, code = UNAUTHORIZED[kind]
    with sim_drill(tmp_path, registry(kind)) as run:
        _inject(run, Fault("send", "status", 401, body, times=0))
        run.broadcast(STEP_S)
    d = run.one()
    assert d.outcome is Outcome.REJECTED and code in d.reason, (d.outcome, d.reason)
    e = run.entry(d)
    assert e is not None and e.refusals >= 1 and e.received_at is None, e


def case_500(kind: str, tmp_path: Path) -> None:
    body, code = SERVER_ERROR[kind]
    with sim_drill(tmp_path, registry(kind)) as run:
        _inject(run, Fault("send", "status", 500, body, times=0))
        run.broadcast(STEP_S)
    d = run.one()
    assert d.outcome is Outcome.REJECTED and code in d.reason, (d.outcome, d.reason)
    e = run.entry(d)
    assert e is not None and e.received_at is None, e


def case_reset(kind: str, tmp_path: Path) -> None:
    with sim_drill(tmp_path, registry(kind)) as run:
        fault = _inject(run, Fault("send", "disconnect"))
        run.broadcast(STEP_S)
    d = run.one()
    assert fault.hits == 1
    assert d.outcome is Outcome.DELIVERED, (d.outcome, d.reason)
    e = run.entry(d)
    assert e is not None and e.visible_at is not None, e


def case_not_json(kind: str, tmp_path: Path) -> None:
    with sim_drill(tmp_path, registry(kind)) as run:
        fault = _inject(run, Fault("send", "garbage", times=0))
        run.broadcast(1.0)
    d = run.one()
    assert fault.hits >= 1
    assert d.outcome is Outcome.LOST, (d.outcome, d.reason)
    if kind == "webhook":  # any 2xx is the webhook's acceptance; it never showed up
        assert "not seen" in d.reason, d.reason
    else:
        assert "JSON" in d.reason and "text/html" in d.reason, d.reason
    assert run.entry(d) is None  # the far end never heard of it


def case_observer_not_json(kind: str, tmp_path: Path) -> None:
    with sim_drill(tmp_path, registry(kind)) as run:
        fault = _inject(run, Fault("read", "garbage", times=0))
        run.broadcast(1.0)
    d = run.one()
    assert fault.hits >= 1
    assert d.outcome is Outcome.ERROR and "could not look" in d.reason, (d.outcome, d.reason)
    e = run.entry(d)
    assert e is not None and e.visible_at is not None, e  # it arrived: error, not lost


def case_observer_expired(kind: str, tmp_path: Path) -> None:
    with sim_drill(tmp_path, registry(kind)) as run:
        sim = run.sim("chat")
        run.broadcast(STEP_S, step="before")
        run.on_loop(lambda: sim.expire_observer(KEY))
        run.broadcast(STEP_S, step="after")
    assert run.one("before").outcome is Outcome.DELIVERED
    d = run.one("after")
    if kind in ("teams", "lineworks"):  # short-lived access tokens: renewed, looked again
        assert d.outcome is Outcome.DELIVERED, (d.outcome, d.reason)
    else:
        assert d.outcome is Outcome.ERROR, (d.outcome, d.reason)
        assert "observer" in d.reason and "観測" in d.reason, d.reason
    e = run.entry(d)
    assert e is not None and e.received_at is not None, e  # it was taken: error, not lost


def _case(name: str, kind: str, fn: Any) -> FaultCase:
    def run(tmp_path: Path) -> None:
        fn(kind, tmp_path)

    return FaultCase(f"chat-{kind}-{name}", run)


CASES: list[FaultCase] = [
    _case(name, kind, fn)
    for kind in KINDS
    for name, fn in (
        ("429", case_429),
        ("401", case_401),
        ("500", case_500),
        ("reset-mid-response", case_reset),
        ("not-json", case_not_json),
        ("observer-not-json", case_observer_not_json),
        ("observer-token-expired", case_observer_expired),
    )
]
