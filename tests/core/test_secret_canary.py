"""The canary: a secret in every secret field of every kind appears in no output at all.

Every secret field of every channel kind (webhook, Slack, Teams by workflow and by
Graph, Mattermost, LINE WORKS, Matrix, mail SMTP and IMAP, Twilio and its
loopback) holds a distinctive random value, through ``env:`` and ``file:``
references. One test drives the real command line in fresh processes —
``--help`` of every command, ``registry check`` (good, bad, unresolvable, a
secret file that is not UTF-8), ``run`` on the simulators and ``run --live``
against local far ends that *echo the credential* in their errors (an HTTP
server quoting the bearer token, the Basic auth pair and the body, as Slack's
``invalid_auth`` or a Twilio 401 can; an SMTP and an IMAP server quoting the
password), a push to a local Pushgateway-shaped sink, ``scorecard`` in every
format, ``serve`` scraped with its basic auth, and a short ``surge`` — then
looks for every canary, plain and base64 (at each alignment, inside Basic
auth), URL- and JSON-encoded, in every stdout and stderr, JSON log line,
journal row (the SQLite files' bytes), report file, metric and pushed body.

The far ends must really have been sent the canaries (else this proves
nothing), and what they echoed must be in the journal as ``***``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import secrets
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from drills.cli import SUBCOMMANDS, main
from probes.sim.base import free_port
from tests.support import run_tsunagari

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "Kn4ry" + secrets.token_hex(4)


def canary(tag: str, odd: bool = False) -> str:
    # Some carry characters that URL-encode and JSON-escape differently.
    return f"{PREFIX}{tag}{secrets.token_hex(8)}" + ("/+=@ :\\q" if odd else "")


# --------------------------------------------------------------- the far ends


class EchoFarEnd:
    """HTTP, SMTP and IMAP on loopback that refuse everything and quote what they got.

    HTTP: every request gets 401 with the Authorization header, its Basic auth
    decoded, the path and the body in ``error``/``message``/``error_description``
    (so whichever field a kind reads, it reads the credential). ``/metrics/job``
    (the Pushgateway's API) is accepted and kept. SMTP: ``535`` quoting the AUTH
    exchange. IMAP: ``NO`` quoting the LOGIN line.
    """

    def __init__(self) -> None:
        from drills.core.background import BackgroundLoop

        self.loop = BackgroundLoop("canary-far-end")
        self.received: list[str] = []  # everything sent to us, decoded (credentials in it)
        self.pushed: list[str] = []
        self.http, self.smtp, self.imap = self.loop.run(self._start())

    async def _start(self) -> tuple[int, int, int]:
        from aiohttp import web

        async def echo(request: web.Request) -> web.Response:
            body = await request.text()
            if request.path.startswith("/metrics/job"):
                self.pushed.append(body)
                return web.Response(status=200)
            auth = request.headers.get("Authorization", "")
            said = f"{auth} path={request.path_qs} body={body}"
            if auth.startswith("Basic "):
                said += " decoded=" + base64.b64decode(auth[6:]).decode("utf-8", "replace")
            self.received += [unquote(said), unquote_plus(said)]
            text = f"invalid_auth for {said}"
            data = {
                "ok": False,
                "error": text,
                "message": text,
                "code": 20003,
                "errcode": "M_UNKNOWN_TOKEN",
                "error_description": text,
                "errorMessage": text,
                "status_code": 401,
                "id": "api.context.session_expired.app_error",
            }
            return web.json_response(data, status=401)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", echo)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        http = int(self.runner.addresses[0][1])
        self.servers = [
            await asyncio.start_server(self._smtp, "127.0.0.1", 0),
            await asyncio.start_server(self._imap, "127.0.0.1", 0),
        ]
        smtp, imap = (s.sockets[0].getsockname()[1] for s in self.servers)
        return http, smtp, imap

    async def _smtp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 echo ESMTP\r\n")
        try:
            while line := (await reader.readline()).decode("utf-8", "replace").strip():
                verb = line.split(" ")[0].upper()
                if verb in ("EHLO", "HELO"):
                    writer.write(b"250-echo\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n")
                elif verb == "AUTH":
                    said = line
                    if line.upper().startswith("AUTH LOGIN"):  # user (unless given), password
                        prompts = [b"334 VXNlcm5hbWU6\r\n", b"334 UGFzc3dvcmQ6\r\n"]
                        for prompt in prompts[len(line.split()) - 2 :]:
                            writer.write(prompt)
                            said += " " + (await reader.readline()).decode().strip()
                    decoded = " ".join(
                        base64.b64decode(p + "=" * (-len(p) % 4)).decode("utf-8", "replace")
                        for p in said.split()[2:]
                    )
                    self.received.append(decoded)
                    reply = f"535 5.7.8 authentication failed for {said} ({decoded})"
                    writer.write(reply.replace("\n", " ").encode() + b"\r\n")
                elif verb == "QUIT":
                    writer.write(b"221 bye\r\n")
                    break
                else:
                    writer.write(b"530 5.7.0 authentication required\r\n")
                await writer.drain()
        finally:
            writer.close()

    async def _imap(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK [CAPABILITY IMAP4rev1 IDLE AUTH=PLAIN] echo ready\r\n")
        try:
            while raw := await reader.readline():
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                while m := re.search(r"\{(\d+)\+?\}$", line):  # a literal follows
                    if not line.endswith("+}"):
                        writer.write(b"+ go ahead\r\n")
                        await writer.drain()
                    literal = await reader.readexactly(int(m.group(1)))
                    rest = (await reader.readline()).decode("utf-8", "replace").rstrip("\r\n")
                    line = line[: m.start()] + literal.decode("utf-8", "replace") + rest
                tag, _, command = line.partition(" ")
                verb = command.split(" ")[0].upper()
                if verb == "CAPABILITY":
                    writer.write(f"* CAPABILITY IMAP4rev1 IDLE\r\n{tag} OK done\r\n".encode())
                elif verb in ("LOGIN", "AUTHENTICATE"):
                    self.received.append(command)
                    writer.write(f"{tag} NO [AUTHENTICATIONFAILED] refused {command}\r\n".encode())
                elif verb == "LOGOUT":
                    writer.write(f"* BYE\r\n{tag} OK bye\r\n".encode())
                    break
                else:
                    writer.write(f"{tag} BAD not now\r\n".encode())
                await writer.drain()
        finally:
            writer.close()

    def close(self) -> None:
        async def stop() -> None:
            for server in self.servers:
                server.close()
            await self.runner.cleanup()

        self.loop.run(stop())
        self.loop.close()


@pytest.fixture
def far_end() -> Iterator[EchoFarEnd]:
    end = EchoFarEnd()
    yield end
    end.close()


# ------------------------------------------------------------------ the registry


def pem_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def write_registry(tmp: Path, end: EchoFarEnd) -> tuple[Path, dict[str, str], dict[str, str]]:
    """The registry, the environment it needs, and every canary by the field it is in."""
    base = f"http://127.0.0.1:{end.http}"
    values: dict[str, str] = {}
    env: dict[str, str] = {}
    secret_dir = tmp / "secrets"
    secret_dir.mkdir()

    def ref(field: str, *, as_file: bool = False, value: str | None = None) -> str:
        values[field] = value if value is not None else canary(field[:3], odd=len(values) % 3 == 0)
        name = "TSG_CANARY_" + re.sub(r"[^A-Z0-9]", "_", field.upper())
        if as_file:
            path = secret_dir / name
            path.write_text(values[field] + "\n", encoding="utf-8")
            return f"file:{path}"
        env[name] = values[field]
        return f"env:{name}"

    values["teams.workflow_url sig"] = canary("sig")  # the secret part of the URL
    workflow = f"{base}/workflows/run?api-version=1&sig={values['teams.workflow_url sig']}"
    channels = {
        "webhook": {
            "url": f"{base}/hooks/r1",
            "auth": ref("webhook.auth"),
            "observer": {
                "url": f"{base}/read/r1",
                "auth": ref("webhook.observer.auth", as_file=True),
            },
        },
        "slack": {
            "base_url": f"{base}/api/",
            "channel": "C0CANARY",
            "bot_token": ref("slack.bot_token", value="xoxb-" + canary("slb")),
            "observer_token": ref("slack.observer_token", as_file=True),
        },
        "teams": {"workflow_url": ref("teams.workflow_url", value=workflow)},
        "teams-graph": {
            "kind": "teams",
            "graph_url": f"{base}/graph",
            "login_url": f"{base}/login",
            "team_id": "team",
            "channel_id": "chan",
            "graph_sender": {
                "tenant": "tenant",
                "client_id": "client",
                "client_secret": ref("teams.graph_sender.client_secret"),
                "refresh_token": ref("teams.graph_sender.refresh_token", as_file=True),
            },
            "observer": {
                "tenant": "tenant",
                "client_id": "watch",
                "client_secret": ref("teams.observer.client_secret"),
            },
        },
        "mattermost": {
            "url": base,
            "channel_id": "c" * 26,
            "token": ref("mattermost.token"),
            "observer": {"token": ref("mattermost.observer.token", as_file=True), "mode": "poll"},
        },
        "lineworks": {
            "api_url": f"{base}/lw",
            "auth_url": f"{base}/lwauth",
            "bot_id": "1",
            "channel_id": "chan",
            "app": {
                "client_id": "cid",
                "service_account": "sa@example",
                "client_secret": ref("lineworks.app.client_secret"),
                "private_key": ref("lineworks.app.private_key", as_file=True, value=pem_key()),
            },
            "observer": {
                "app": {
                    "client_id": "cid2",
                    "service_account": "sa2@example",
                    "client_secret": ref("lineworks.observer.client_secret", as_file=True),
                    "private_key": ref("lineworks.observer.private_key", value=pem_key()),
                }
            },
        },
        "matrix": {
            "homeserver": base,
            "room": "!canary:example",
            "sender": {"user": "@bot:example", "token": ref("matrix.sender.token")},
            "observer": {"user": "@watch:example", "token": ref("matrix.observer.token")},
        },
        "mail": {
            "from": "drill@example.lg.jp",
            "to": ["staff@example.lg.jp"],
            "smtp": {
                "host": "127.0.0.1",
                "port": end.smtp,
                "security": "plain",
                "user": "drill",
                "password": ref("mail.smtp.password"),
                "timeout": "2s",
                "retries": 0,
            },
            "imap": {
                "host": "127.0.0.1",
                "port": end.imap,
                "security": "plain",
                "user": "staff",
                "password": ref("mail.imap.password", as_file=True),
                "timeout": "2s",
            },
        },
        "twilio": {
            "api_base": base,
            "account_sid": ref("twilio.account_sid", value="AC" + secrets.token_hex(16)),
            "auth_token": ref("twilio.auth_token", as_file=True),
            "from": "+815012345678",
            "to": ["+819012345678"],
            "loopback": {
                "receiver": "+819012345678",
                "account_sid": ref(
                    "twilio.loopback.account_sid", value="AC" + secrets.token_hex(16)
                ),
                "auth_token": ref("twilio.loopback.auth_token"),
            },
            "max_retries": 0,
        },
    }
    # The same relay without an observer: its sender is tried (and refused) even
    # though the observer of "mail" cannot log in.
    channels["mail-send"] = {**channels["mail"], "kind": "mail"}
    del channels["mail-send"]["imap"]
    live = []
    sims = []
    for cid, settings in channels.items():
        kind = settings.pop("kind", cid)
        live.append({"id": cid, "kind": kind, **settings})
        if cid not in ("teams-graph", "mail-send"):  # (the simulator: one of each)
            sims.append({"id": cid, "kind": kind, **settings, "sim": {"latency": "10ms"}})
    registry = {
        "defaults": {"slo": {"latency": "2s"}},
        "municipalities": [
            {"code": "131016", "name": "千代田区", "tags": ["sim"], "channels": sims},
            {"code": "131211", "name": "足立区", "tags": ["live"], "channels": live},
        ],
    }
    path = tmp / "registry.yaml"
    path.write_text(json.dumps(registry, ensure_ascii=False, indent=1), encoding="utf-8")
    return path, env, values


# ------------------------------------------------------------------ looking for it


def forms(value: str, users: tuple[str, ...] = ()) -> dict[str, str]:
    """The ways *value* could leak: plain, encoded, and as base64 at each alignment."""
    out = {
        "plain": value,
        "url": quote(value, safe=""),
        "url+": quote_plus(value),
        "json": json.dumps(value)[1:-1],
    }
    raw = value.encode()
    for shift in range(3):
        part = raw[shift:][: (len(raw) - shift) // 3 * 3]
        out[f"base64@{shift}"] = base64.b64encode(part).decode()
    for user in users:
        out[f"basic({user})"] = base64.b64encode(f"{user}:{value}".encode()).decode()
    for n, line in enumerate(value.splitlines()):
        if len(line) >= 16 and not line.startswith("-----"):
            out[f"line{n}"] = line
    return out


class Watch:
    """Everything produced, by where it came from; :meth:`leaks` names what leaked where."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.texts: dict[str, bytes] = {}

    def add(self, where: str, data: str | bytes) -> None:
        self.texts[where] = data if isinstance(data, bytes) else data.encode("utf-8", "replace")

    def add_files(self, folder: Path, label: str) -> None:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.parent.name != "secrets":  # (where they are kept)
                self.add(f"{label}:{path.relative_to(folder)}", path.read_bytes())

    def masked(self, where: str) -> str:
        """The tail of one output with every canary form replaced (for assertion messages)."""
        text = self.texts[where][-3000:].decode("utf-8", "replace")
        for field, value in self.values.items():
            for form in forms(value).values():
                text = text.replace(form, f"<canary {field}>")
        return text

    def checks(self) -> int:
        return sum(len(forms(v, ("drill", "AC"))) for v in self.values.values()) * len(self.texts)

    def leaks(self) -> list[str]:
        """``field/form in where`` for every canary form found (never the value itself)."""
        found = []
        for field, value in self.values.items():
            users = tuple(self.values[f] for f in self.values if f.endswith("account_sid"))
            for form, text in forms(value, ("drill", *users)).items():
                needle = text.encode()
                for where, data in self.texts.items():
                    if needle in data or (form == "plain" and needle in data.replace(b"\\/", b"/")):
                        found.append(f"{field}/{form} in {where}")
        return found


# ------------------------------------------------------------------------ the CLI


SCENARIO = '''\
"""カナリア訓練: every channel of every kind, once."""
import pytest

pytestmark = [pytest.mark.scenario("カナリア訓練"), pytest.mark.deadline("20s")]


def test_全チャネル(drill):
    drill.broadcast("参集訓練", timeout="2s").expect(reached="100%", within="2s")
'''


def test_no_canary_anywhere(
    far_end: EchoFarEnd, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry, env, values = write_registry(tmp_path, far_end)
    watch = Watch(values)
    codes: dict[str, int] = {}

    def cli(label: str, *args: str) -> Any:
        done = run_tsunagari(*args, cwd=tmp_path, env=env)
        watch.add(f"{label} stdout", done.stdout)
        watch.add(f"{label} stderr", done.stderr)
        codes[label] = done.returncode
        return done

    # --help of every command (nothing there reads a secret; checked all the same).
    for argv in ([], *([s[0]] for s in SUBCOMMANDS), ["registry", "check"]):
        with pytest.raises(SystemExit):
            main(["--lang", "en", *argv, "--help"])
        out, err = capsys.readouterr()
        watch.add(f"help {argv}", out + err)

    # registry check: good; every secret unset; a secret file not UTF-8; a broken file.
    cli("check", "registry", "check", str(registry))
    done = run_tsunagari("registry", "check", str(registry), cwd=tmp_path, env={})  # all unset
    watch.add("check unset output", done.stdout + done.stderr)
    codes["check unset"] = done.returncode
    bad_file = tmp_path / "secrets" / "TSG_CANARY_MAIL_IMAP_PASSWORD"
    good_bytes = bad_file.read_bytes()
    bad_file.write_bytes(b"\xff\xfe" + good_bytes)
    cli("check not-utf8", "registry", "check", str(registry))
    bad_file.write_bytes(good_bytes)
    broken = tmp_path / "broken.yaml"
    broken.write_text(registry.read_text(encoding="utf-8")[:-40] + "\n  - {oops", encoding="utf-8")
    cli("check broken", "registry", "check", str(broken))

    # run --live: the simulators (千代田区) and the far ends that echo credentials (足立区),
    # with every log record (DEBUG, httpx's request lines included) printed by pytest.
    scenarios = tmp_path / "s"
    scenarios.mkdir()
    (scenarios / "test_canary.py").write_text(SCENARIO, encoding="utf-8")
    common = ["--registry", str(registry), "--journal", "j.sqlite", "--pytest=-rA"]
    cli(
        "run live",
        "run",
        "s",
        *common,
        "--live",
        "-v",
        "--out",
        "out-live",
        "--pytest=--log-level=DEBUG",
        "--pytest=--log-cli-level=DEBUG",
        f"--push-gateway=http://127.0.0.1:{far_end.http}",
    )

    # scorecard in every format (in this process: the journal is all it reads).
    for fmt in ("table", "md", "csv", "json", "html"):
        codes[f"scorecard {fmt}"] = main(
            ["--lang", "en", "scorecard", "--journal", str(tmp_path / "j.sqlite"), "--format", fmt]
        )
        out, err = capsys.readouterr()
        watch.add(f"scorecard {fmt} stdout", out)
        watch.add(f"scorecard {fmt} stderr", err)

    # serve: a password reference that cannot be resolved; then scraped with its basic
    # auth (and refused without it).
    cli("serve unset", "serve", "--journal", "j.sqlite", "--basic-auth-user", "drill",
        "--basic-auth-password", "env:TSG_CANARY_NOT_SET")  # fmt: skip
    port = free_port()
    serve_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    values["serve.password"] = serve_env["TSG_CANARY_SERVE"] = canary("srv", odd=True)
    serve = subprocess.Popen(
        [sys.executable, "-m", "drills.cli", "--lang", "en", "serve", "--journal", "j.sqlite",
         "--registry", str(registry), "--port", str(port), "--basic-auth-user", "drill",
         "--basic-auth-password", "env:TSG_CANARY_SERVE"],
        cwd=tmp_path, env=serve_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        auth = base64.b64encode(f"drill:{values['serve.password']}".encode()).decode()
        metrics = scrape(port, auth, serve)
        watch.add("metrics", metrics)
        try:
            scrape(port, base64.b64encode(b"drill:wrong").decode())
            refused = False
        except urllib.error.HTTPError as exc:
            refused = exc.code == 401
            watch.add("metrics refused", exc.read())
    finally:
        serve.terminate()
        out, err = serve.communicate(timeout=20)
        watch.add("serve stdout", out)
        watch.add("serve stderr", err)
        print(watch.masked("serve stderr")[-1500:])  # shown only if the test fails

    # a short surge on a simulated channel whose registry carries the canaries.
    cli(
        "surge", "surge", str(registry), "--channel", "131016/webhook", "--rates", "5",
        "--step", "1s", "--rest", "0", "--probes", "1", "--journal", "j.sqlite", "--json",
    )  # fmt: skip

    watch.add("pushed", "\n".join(far_end.pushed))
    watch.add_files(tmp_path, "file")

    # ---- it really went everywhere
    assert codes["check"] == 0, watch.masked("check stderr")
    assert codes["check unset"] == 2 and codes["check not-utf8"] == 2
    assert codes["check broken"] == 2
    assert (
        b"not UTF-8" in watch.texts["check not-utf8 stdout"] + watch.texts["check not-utf8 stderr"]
    )
    # 1: channels refused; 3: the mail observer could not log in (an error, not a loss)
    assert codes["run live"] in (1, 3), watch.masked("run live stderr")
    assert all(codes[f"scorecard {f}"] == 0 for f in ("table", "md", "csv", "json", "html"))
    assert codes["surge"] in (0, 1), watch.masked("surge stderr")
    assert codes["serve unset"] == 2, watch.masked("serve unset stderr")
    assert refused and "tsunagari_" in metrics
    assert far_end.pushed, "the run pushed nothing"
    # The far ends were sent the canaries, and echoed them back.
    received = "\n".join(far_end.received)
    sent = {f for f, v in values.items() if v in received or v.replace("\\", "\\\\") in received}
    # (not sent: a private key signs, a whole workflow URL is quoted as its path, serve's
    # password is ours, and the webhook observer is never reached once its sender is refused)
    expected_sent = {
        f for f in values if not f.endswith(("private_key", "workflow_url", "password"))
    } - {"webhook.observer.auth"}
    expected_sent |= {"mail.smtp.password", "mail.imap.password"}
    assert sent >= expected_sent, sorted(expected_sent - sent)
    # What they echoed is in the journal, masked.
    with sqlite3.connect(tmp_path / "j.sqlite") as db:
        masked = {
            row[0]
            for row in db.execute(
                "SELECT channel_id FROM deliveries WHERE municipality_code = '131211'"
                " AND reason LIKE '%***%'"
            )
        }
    assert masked >= {
        "webhook", "slack", "mattermost", "teams", "teams-graph", "mail", "mail-send"
    }, masked  # fmt: skip

    leaks = watch.leaks()
    assert leaks == [], leaks[:20]
    print(
        f"canary: {len(values)} secret fields, {len(watch.texts)} outputs, "
        f"{watch.checks()} form×output checks, far ends sent {len(sent)} canaries, "
        f"{len(masked)} channels journalled an echoed credential as ***"
    )


def scrape(port: int, auth: str, server: subprocess.Popen[str] | None = None) -> str:
    deadline = time.monotonic() + 40  # a bound on a hung start; a dead server fails at once
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Basic {auth}"}
    )
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                return str(resp.read().decode("utf-8"))
        except urllib.error.URLError as exc:
            if isinstance(exc, urllib.error.HTTPError) or time.monotonic() > deadline:
                raise
            if server is not None and server.poll() is not None:
                raise AssertionError(f"serve exited with {server.returncode}") from exc
            time.sleep(0.05)  # the server is starting: poll for its port, not a margin
