"""The harness's served endpoints under hostile or clumsy clients.

``tsunagari serve`` (/metrics) and the Twilio webhook receiver, each in its own
process with its stderr kept: loopback by default, request-line / header / body
limits, malformed requests answered 4xx with no traceback, slow clients that
cannot starve a scrape, forged Twilio signatures refused and not believed, and
the warning for an exporter exposed beyond loopback.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from probes.serving import IDLE_TIMEOUT_S
from probes.sim.twilio import twilio_signature
from tests.metrics.served import ACCOUNT, AUTH_TOKEN, Served, free_port, make_journal, raw

MALFORMED: dict[str, bytes] = {
    "garbage-request-line": b"GARBAGE\r\n\r\n",
    "negative-content-length": b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "8kb-url": b"GET /" + b"a" * 8192 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "9kb-header": b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
    "200-headers": b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
    + b"".join(b"X-H%d: v\r\n" % i for i in range(200))
    + b"\r\n",
    "bad-version": b"GET /metrics HTTP/9.9\r\nHost: x\r\n\r\n",
    "nul-in-header": b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "cl-and-te": b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
    "bad-chunk": b"POST /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "tls-hello-on-http": bytes.fromhex("16030100a5010000a10303") + b"\x00" * 64,
    "huge-content-length": b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: "
    + b"9" * 40
    + b"\r\n\r\n",
    "post-200kb": b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 204800\r\n\r\n"
    + b"x" * 204800,
    "too-many-name-filters": b"GET /metrics?"
    + b"&".join(b"name[]=m%d" % i for i in range(201))
    + b" HTTP/1.1\r\nHost: x\r\n\r\n",
}


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_journal(tmp_path_factory.mktemp("served"))


@pytest.fixture(scope="module")
def exporter(journal: tuple[Path, Path]) -> Iterator[Served]:
    """One exporter for the tests that do not stop it."""
    served = Served.exporter(journal[0], "--registry", str(journal[1]))
    yield served
    served.stop()


@pytest.fixture
def own_exporter(journal: tuple[Path, Path]) -> Iterator[Served]:
    served = Served.exporter(journal[0], "--registry", str(journal[1]))
    yield served
    served.stop()


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket in LISTEN on *port* (from /proc/net/tcp{,6})."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_serve_listens_on_loopback_only_by_default(exporter: Served) -> None:
    assert exporter.url == f"http://127.0.0.1:{exporter.port}/metrics"
    assert listening_addresses(exporter.port) == {"0100007F"}  # 127.0.0.1, nothing else


def test_the_callback_receiver_listens_on_loopback_only_by_default() -> None:
    from probes.sms.probe import StatusCallbackSettings

    assert StatusCallbackSettings().listen_host == "127.0.0.1"
    served = Served.callbacks()
    try:
        assert listening_addresses(served.port) == {"0100007F"}
    finally:
        served.stop()


def test_malformed_requests_get_a_4xx_no_traceback_and_the_server_stays_up(
    own_exporter: Served,
) -> None:
    exporter = own_exporter
    statuses = {case: raw(exporter.port, data)[0] for case, data in MALFORMED.items()}
    assert all(400 <= s < 500 for s in statuses.values()), statuses
    scrape = httpx.get(exporter.url, timeout=10)
    assert scrape.status_code == 200 and "tsunagari_deliveries_total{" in scrape.text
    assert exporter.alive()
    stderr = exporter.stop().stderr
    assert "Traceback" not in stderr and "Error handling request" not in stderr, stderr
    assert exporter.proc.returncode == 0


def test_name_filters_select_metric_families(exporter: Served) -> None:
    one = httpx.get(exporter.url, params={"name[]": "tsunagari_deliveries_total"}, timeout=10)
    families = {line.split()[2] for line in one.text.splitlines() if line.startswith("# TYPE")}
    assert families == {"tsunagari_deliveries_total"}
    assert httpx.get(exporter.url, params={"name[]": "nope"}, timeout=10).text == ""


def test_slow_clients_do_not_starve_a_scrape(exporter: Served) -> None:
    """300 clients that send half a request and wait: a normal scrape is served among them.

    Ground truth is the order of events, not a guessed margin: every slow socket is still
    open when the scrape's answer arrives (the server did not have to drop them first),
    and the scrape took less than the idle timeout after which it would drop them.
    """
    baseline = []
    for _ in range(3):
        started = time.monotonic()
        assert httpx.get(exporter.url, timeout=10).status_code == 200
        baseline.append(time.monotonic() - started)
    slow = []
    try:
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", exporter.port), timeout=5)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            slow.append(s)
        started = time.monotonic()
        scrape = httpx.get(exporter.url, timeout=IDLE_TIMEOUT_S)
        took = time.monotonic() - started
        assert scrape.status_code == 200
        still_open = 0
        for s in slow:
            s.setblocking(False)
            try:
                still_open += s.recv(1) != b""  # b"": the server closed it
            except BlockingIOError:
                still_open += 1  # nothing to read: open and waiting
        assert still_open == 300
        assert took < IDLE_TIMEOUT_S
    finally:
        for s in slow:
            s.close()
    print(f"scrape alone {min(baseline):.3f}-{max(baseline):.3f} s; among 300 slow: {took:.3f} s")


def test_a_slow_client_is_dropped_after_the_idle_timeout() -> None:
    """In process with a short idle timeout: a half-sent request is closed, not kept forever."""
    import asyncio

    from aiohttp import web

    from probes.serving import runner_settings

    async def main() -> tuple[float, float]:
        app = web.Application()

        async def ok(_: web.Request) -> web.Response:
            return web.Response(text="ok")

        app.router.add_get("/", ok)
        runner = web.AppRunner(app, **{**runner_settings("t"), "keepalive_timeout": 0.5})
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            opened = time.monotonic()  # before connecting: the server's timer starts later
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the server
            writer.close()
            return opened, time.monotonic()
        finally:
            await runner.cleanup()

    opened, closed = asyncio.run(main())
    assert closed - opened >= 0.5  # not before the timeout …
    assert closed - opened < 10  # … and not never


# ---------------------------------------------------------------- Twilio webhooks


def _form(status: str = "delivered") -> dict[str, str]:
    return {"AccountSid": ACCOUNT, "MessageSid": "SM" + "2" * 32, "MessageStatus": status}


def test_callbacks_refuse_forgeries_and_malformed_bodies_without_a_traceback() -> None:
    served = Served.callbacks()
    try:
        url = f"http://127.0.0.1:{served.port}/twilio/status"
        good = _form()
        ok = httpx.post(
            url, data=good, headers={"X-Twilio-Signature": twilio_signature(AUTH_TOKEN, url, good)}
        )
        assert ok.status_code == 204
        forged = {
            "wrong-key": twilio_signature("not-the-token", url, good),
            "empty": "",
            "non-ascii": ("署名" * 14).encode(),
            "long": "A" * 8000,
        }
        for signature in forged.values():
            resp = httpx.post(url, data=good, headers={"X-Twilio-Signature": signature})
            assert resp.status_code == 403
        assert httpx.post(url, data=good).status_code == 403  # no signature at all
        bad_bodies = {
            "not-utf8": (b"AccountSid=\xff\xfe&Body=\xc3", "application/x-www-form-urlencoded"),
            "bad-charset": (b"a=b", "application/x-www-form-urlencoded; charset=nope-42"),
            "json": (b'{"AccountSid": 1}', "application/json"),
            "multipart-file": (
                b'--b\r\nContent-Disposition: form-data; name="f"; filename="x"\r\n\r\nx\r\n--b--\r\n',
                "multipart/form-data; boundary=b",
            ),
            "broken-multipart": (b"--b\r\nnonsense", "multipart/form-data; boundary=b"),
            "over-64kib": (b"Body=" + b"x" * 70_000, "application/x-www-form-urlencoded"),
        }
        unsigned_forms = 0  # bodies that parse as a form (no signature): refused and counted
        for body, content_type in bad_bodies.values():
            resp = httpx.post(url, content=body, headers={"Content-Type": content_type})
            assert 400 <= resp.status_code < 500, (content_type, resp.status_code)
            unsigned_forms += resp.status_code == 403
        for data in MALFORMED.values():
            status, _ = raw(served.port, data.replace(b"/metrics", b"/twilio/status"))
            assert 400 <= status < 500
            unsigned_forms += status == 403  # a POST with no form at all: unsigned too
        assert served.alive()
    finally:
        served.stop()
    counts = served.counts()
    assert counts["accepted"] == 1 and counts["statuses"] == 1  # only the signed one believed
    assert counts["refused"] == len(forged) + 1 + unsigned_forms  # every refusal counted
    assert "Traceback" not in served.stderr and "Error handling request" not in served.stderr


# ---------------------------------------------------------------- beyond loopback


def _serve(
    journal: Path,
    *args: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str] | None = None,
) -> str:
    """Run ``serve`` (in process) on 0.0.0.0:PORT where PORT is held — bound, never
    listening — so it warns, then cannot bind: this test never listens beyond loopback."""
    from drills.cli import build_parser

    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    holder = socket.socket()
    holder.bind(("0.0.0.0", 0))  # reachable by no one: not listening
    port = holder.getsockname()[1]
    try:
        argv = ["--lang", "en", "serve", "--journal", str(journal), "--host", "0.0.0.0"]
        args = build_parser("en").parse_args([*argv, "--port", str(port), *args])
        code = args.func(args)
    finally:
        holder.close()
    err = capsys.readouterr().err
    assert code == 2 and "cannot listen" in err, err
    return err


def test_listening_beyond_loopback_without_tls_and_auth_warns(
    journal: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    err = _serve(journal[0], capsys=capsys, monkeypatch=monkeypatch)
    assert "warning: listening beyond loopback; use TLS and basic auth." in err


def test_no_warning_with_tls_and_basic_auth(
    journal: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import trustme

    cert = trustme.CA().issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    tls = ["--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem")]
    auth = ["--basic-auth-user", "prom", "--basic-auth-password", "env:TSG_HARDEN_PW"]
    env = {"TSG_HARDEN_PW": "pw-canary-77"}
    quiet = _serve(journal[0], *tls, *auth, env=env, capsys=capsys, monkeypatch=monkeypatch)
    assert "warning" not in quiet
    tls_only = _serve(journal[0], *tls, capsys=capsys, monkeypatch=monkeypatch)
    assert "warning: listening beyond loopback" in tls_only  # TLS alone: still warned


def test_tls_port_survives_plain_http_and_garbage(
    journal: tuple[Path, Path], tmp_path: Path
) -> None:
    """End to end over TLS (trustme): plaintext and junk on the TLS port leave no traceback."""
    import ssl

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "both.pem"))
    served = Served.exporter(
        journal[0],
        "--tls-cert", str(tmp_path / "both.pem"), "--tls-key", str(tmp_path / "both.pem"),
        "--basic-auth-user", "prom", "--basic-auth-password", "env:TSG_HARDEN_PW",
        env={"TSG_HARDEN_PW": "pw-canary-77"},
    )  # fmt: skip
    try:
        for data in (MALFORMED["garbage-request-line"], b"\x00" * 300, b"GET / HTTP/1.1\r\n\r\n"):
            assert raw(served.port, data)[0] == 0  # no HTTP answer without a TLS handshake
        context = ssl.create_default_context()
        ca.configure_trust(context)
        url = f"https://127.0.0.1:{served.port}/metrics"
        assert httpx.get(url, verify=context, timeout=10).status_code == 401
        ok = httpx.get(url, verify=context, auth=("prom", "pw-canary-77"), timeout=10)
        assert ok.status_code == 200, served.stop().stderr
        with httpx.Client(verify=context, timeout=10) as client:
            resp = client.get(url.replace("/metrics", "/" + "a" * 8192), auth=("prom", "x"))
            assert resp.status_code == 400
    finally:
        served.stop()
    assert "Traceback" not in served.stderr and "pw-canary-77" not in served.stderr
