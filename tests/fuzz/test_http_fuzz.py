"""Fuzzing every HTTP endpoint the harness serves, each server in its own process.

Targets: ``tsunagari serve`` (``/metrics`` with its ``name[]`` query, ``/``, and
anything else), with and without basic auth; the Twilio webhook receiver
(``/twilio/status``, ``/twilio/inbound``) with a real :class:`TwilioProbe` behind
it, fed random forms — unsigned, and *validly signed* so the probe's own
callback handling is fuzzed too. Random methods, paths, query strings, headers,
bodies and raw bytes.

Property, per request: an answer below 500 (a closed connection is allowed only
for raw bytes that never make a complete request), and the server still up; at
the end, no traceback on either server's stderr. Sizes follow the profile
(``tests/fuzz/conftest.py``): default 100 examples per ×1 target, nightly 2,000.
"""

from __future__ import annotations

import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from probes.sim.twilio import twilio_signature
from tests.metrics.served import ACCOUNT, AUTH_TOKEN, Served, make_journal

EXAMPLES = settings().max_examples  # 100 by default, 2,000 at night (conftest.py)

METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT"]
TOKEN = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_!#$%&'*+.^`|~",
                min_size=1, max_size=24)  # fmt: skip
HEADER_VALUE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=100).map(
    str.encode
) | st.binary(max_size=200).map(lambda b: bytes(c for c in b if c not in b"\r\n\x00").strip())
# Framing (Content-Length, Transfer-Encoding) is set right here and fuzzed as raw bytes instead:
# a wrong length would leave the server waiting for a body that never comes.
KNOWN_HEADERS = ["Accept", "Authorization", "Content-Type", "Connection", "Expect", "Host",
                 "X-Twilio-Signature", "Accept-Encoding", "Range", "Cookie", "Origin"]  # fmt: skip
FRAMING = {b"content-length", b"transfer-encoding"}
KNOWN_GAP = """aiohttp 3.14 answers 500 (one log line, no traceback) to a CONNECT request carrying
an Expect header that is not UTF-8: it cannot route an authority-form target, and its
built-in 404 route echoes the Expect value into a body it cannot encode. Every routable
request goes through our own Expect handler (probes.serving.add_fallback_route)."""


def _answer(port: int, data: bytes, *, half_close: bool = False) -> int:
    """Send *data* (then close our side, for raw bytes that may never make a whole request);
    the status code of the answer (0: closed without one)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # answered and closed before reading it all
        first = b""
        try:
            while b"\r\n" not in first:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                first += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    if not first.startswith(b"HTTP/1."):
        return 0
    return int(first.split(b" ", 2)[1])


@st.composite
def requests(draw: st.DrawFn, paths: list[str]) -> bytes:
    """A framed HTTP/1.1 request with random method, path, query, headers and body."""
    method = draw(st.one_of(*[st.sampled_from(METHODS)] * 3, TOKEN))  # 1 in 4: any token
    path = draw(
        st.sampled_from(paths) | st.text(max_size=60).map(lambda p: "/" + quote(p, safe="/%?&=[]"))
    )
    query = draw(
        st.lists(
            st.tuples(st.sampled_from(["name[]", "name", "format"]) | st.text(max_size=10),
                      st.text(max_size=40)),
            max_size=6,
        )
    )  # fmt: skip
    if query:
        path += "?" + urlencode(query)
    headers = draw(
        st.lists(
            st.tuples((st.sampled_from(KNOWN_HEADERS) | TOKEN).map(str.encode), HEADER_VALUE),
            max_size=8,
        )
    )
    body = draw(st.binary(max_size=2000))
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1"]
    skip = FRAMING | ({b"expect"} if method == "CONNECT" else set())  # see KNOWN_GAP
    lines += [name + b": " + value for name, value in headers if name.lower() not in skip]
    lines += [b"Content-Length: %d" % len(body), b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


CALLBACKS_WITH_PROBE = textwrap.dedent(
    """
    import asyncio, json, signal, sys
    from probes.base import ProbeEnv
    from probes.settings import SecretRef
    from probes.sim.base import free_port
    from probes.sms.callbacks import CallbackListener
    from probes.sms.probe import TwilioProbe, TwilioSettings

    async def main():
        port = free_port()
        env = ProbeEnv()
        settings = TwilioSettings.model_validate({
            "account_sid": sys.argv[1], "auth_token": SecretRef.inline(sys.argv[2]),
            "from": "+815012345678", "to": ["+819012345678", "+818012345678"],
            "loopback": {"receiver": "+818012345678"},
            "status_callback": {"listen_port": port},
        })
        probe = TwilioProbe("131211/sms", settings, env)  # its callback handling, not opened
        listener = await CallbackListener.shared(env, "127.0.0.1", port, f"http://127.0.0.1:{port}")
        listener.subscribe(sys.argv[1], sys.argv[2], probe)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        print(f"serving http://127.0.0.1:{port}", flush=True)
        await stop.wait()
        print(json.dumps({"accepted": listener.accepted, "refused": listener.refused}), flush=True)
        await listener.aclose()

    asyncio.run(main())
    """
)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Served]]:
    import sys

    folder: Path = tmp_path_factory.mktemp("fuzz-http")
    journal, registry = make_journal(folder)
    made = {
        "exporter": Served.exporter(journal, "--registry", str(registry)),
        "exporter-auth": Served.exporter(
            journal,
            "--basic-auth-user",
            "prom",
            "--basic-auth-password",
            "env:TSG_FUZZ_PW",
            env={"TSG_FUZZ_PW": "fuzz-pw"},
        ),
        "callbacks": Served([sys.executable, "-c", CALLBACKS_WITH_PROBE, ACCOUNT, AUTH_TOKEN]),
    }
    yield made
    for served in made.values():
        served.stop()
    for name, served in made.items():
        assert "Traceback" not in served.stderr, (name, served.stderr[-3000:])
        assert "Error handling request" not in served.stderr, (name, served.stderr[-3000:])
        assert served.proc.returncode == 0, (name, served.stderr[-3000:])


def _check(served: Served, data: bytes, *, raw_bytes: bool = False) -> None:
    status = _answer(served.port, data, half_close=raw_bytes)
    event(f"HTTP {status}" if status else "closed without an answer")
    assert served.alive(), served.stderr
    assert status < 500, (status, data[:300])
    assert status != 0 or raw_bytes, data[:300]


EXPORTER_PATHS = ["/metrics", "/", "/metrics/", "/favicon.ico", "//metrics", "/%2e%2e/metrics"]
CALLBACK_PATHS = ["/twilio/status", "/twilio/inbound", "/twilio/", "/"]


@settings(max_examples=EXAMPLES)
@given(request=requests(EXPORTER_PATHS))
def test_exporter_answers_every_request_below_500(
    servers: dict[str, Served], request: bytes
) -> None:
    _check(servers["exporter"], request)


@settings(max_examples=EXAMPLES // 2)
@given(request=requests(EXPORTER_PATHS))
def test_exporter_with_basic_auth_answers_every_request_below_500(
    servers: dict[str, Served], request: bytes
) -> None:
    _check(servers["exporter-auth"], request)


@settings(max_examples=EXAMPLES // 2)
@given(data=st.binary(min_size=1, max_size=3000))
def test_exporter_survives_raw_bytes(servers: dict[str, Served], data: bytes) -> None:
    _check(servers["exporter"], data, raw_bytes=True)


@settings(max_examples=EXAMPLES)
@given(request=requests(CALLBACK_PATHS))
def test_callbacks_answer_every_request_below_500(
    servers: dict[str, Served], request: bytes
) -> None:
    _check(servers["callbacks"], request)


FORM_KEYS = ["AccountSid", "MessageSid", "SmsSid", "MessageStatus", "SmsStatus", "ErrorCode",
             "From", "To", "Body", "ApiVersion", "NumSegments"]  # fmt: skip


@settings(max_examples=EXAMPLES)
@given(
    path=st.sampled_from(CALLBACK_PATHS[:2]),
    fields=st.dictionaries(st.sampled_from(FORM_KEYS) | st.text(max_size=12), st.text(max_size=80),
                           max_size=10),
    signed=st.booleans(),
    query=st.sampled_from(["", "?bodySHA256=abc", "?x=1"]),
)  # fmt: skip
def test_signed_and_unsigned_forms_reach_the_probe_without_a_500(
    servers: dict[str, Served], path: str, fields: dict[str, str], signed: bool, query: str
) -> None:
    """Validly signed random forms go all the way into TwilioProbe.on_status/on_inbound."""
    served = servers["callbacks"]
    fields = {"AccountSid": ACCOUNT, **fields} if signed else fields
    url = f"http://127.0.0.1:{served.port}{path}{query}"
    body = urlencode(fields).encode()
    headers = [f"POST {path}{query} HTTP/1.1".encode(), b"Host: 127.0.0.1",
               b"Content-Type: application/x-www-form-urlencoded",
               b"Content-Length: %d" % len(body), b"Connection: close"]  # fmt: skip
    if signed:
        headers.append(b"X-Twilio-Signature: " + twilio_signature(AUTH_TOKEN, url, fields).encode())
    status = _answer(served.port, b"\r\n".join(headers) + b"\r\n\r\n" + body)
    event(f"HTTP {status}")
    assert served.alive()
    believed = signed and fields.get("AccountSid") == ACCOUNT
    assert status == (200 if path.endswith("inbound") else 204) if believed else status == 403
