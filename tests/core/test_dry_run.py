"""``--dry-run``: what a drill would send, to whom, at what cost — and nothing contacted.

The registry is live-configured against local listening sockets that count every
connection (a chat webhook and its observer, an SMTP relay, an IMAP mailbox, a
Twilio API): a dry run must leave every count at 0, start no simulator, bind no
socket, write no journal. The marker and token cannot be switched off by any
option or registry key.
"""

from __future__ import annotations

import json
import socket
import socketserver
import subprocess
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drills.operator.dryrun import TOKEN_PLACEHOLDER
from drills.operator.options import OPTIONS
from probes.base import DrillMessage

# Loaded before pytester's snapshot of sys.modules: the in-process run below would load the
# channel kinds (and aiohttp) itself and drop them after, leaving later tests a second copy.
from probes.chat import webhook  # noqa: F401
from probes.mail import MailProbe  # noqa: F401
from probes.sms import TwilioProbe  # noqa: F401
from probes.sms.status import count_segments
from tests.support import run_tsunagari

ROOT = Path(__file__).resolve().parents[2]
MARKER = "【訓練】"
PRICE = 0.0845
PHONES = ["+819012345678", "+818012345678"]
SECRETS = {
    "TSG_DRY_HOOK": "hook-canary-1",
    "TSG_DRY_READ": "read-canary-2",
    "TSG_DRY_IMAP": "imap-canary-3",
    "TSG_DRY_SID": "AC" + "0" * 32,
    "TSG_DRY_TOKEN": "token-canary-4",
}

SCENARIO = '''\
"""試行のテスト"""

import pytest

pytestmark = [pytest.mark.scenario("試行"), pytest.mark.deadline("5s")]


def test_broadcast(drill):
    step = drill.broadcast("全職員は参集してください。", channels=["chat", "mail", "sms"], repeat=1)
    step.expect(reached="100%", within="5s")


def test_fallback_and_outage(drill):
    with drill.outage("chat", to="131211"):
        drill.fallback("代替経路の確認です。", order=["chat", "mail", "sms"], within="6s")


def test_second_sms_step_crosses_the_cap(drill):
    drill.broadcast("二回目の SMS です。", channels="sms", to="131211", repeat=1)


def test_reads_results(drill):
    step = drill.broadcast("結果を読むシナリオ", channels="chat", to="131016")
    assert step.reachability() == 1.0
'''


class Counter(socketserver.ThreadingTCPServer):
    """A loopback listener that counts (and drops) every connection."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.connections = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Count)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _Count(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server = self.server
        assert isinstance(server, Counter)
        with server.lock:
            server.connections += 1


@pytest.fixture
def counters() -> Iterator[dict[str, Counter]]:
    made = {name: Counter() for name in ("hook", "observer", "smtp", "imap", "twilio")}
    threads = [
        threading.Thread(target=c.serve_forever, args=(0.02,), daemon=True) for c in made.values()
    ]
    for t in threads:
        t.start()
    yield made
    for c in made.values():
        c.shutdown()
        c.server_close()


def live_registry(folder: Path, c: dict[str, Counter]) -> Path:
    path = folder / "registry.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            defaults: {{marker: {MARKER}}}
            municipalities:
              - code: "131211"
                name: 足立区
                channels:
                  - id: chat
                    kind: webhook
                    url: http://127.0.0.1:{c["hook"].port}/hooks/abc
                    auth: env:TSG_DRY_HOOK
                    observer: {{url: "http://127.0.0.1:{c["observer"].port}/rooms/abc", auth: env:TSG_DRY_READ}}
                  - id: mail
                    kind: mail
                    smtp: {{host: 127.0.0.1, port: {c["smtp"].port}, security: plain}}
                    from: drill@adachi.example.lg.jp
                    to: [staff1@adachi.example.lg.jp, staff2@adachi.example.lg.jp]
                    observed: [staff1@adachi.example.lg.jp]
                    imap: {{host: 127.0.0.1, port: {c["imap"].port}, security: plain, user: drill, password: env:TSG_DRY_IMAP}}
                  - id: sms
                    kind: twilio
                    account_sid: env:TSG_DRY_SID
                    auth_token: env:TSG_DRY_TOKEN
                    from: "+815012345678"
                    to: {json.dumps(PHONES)}
                    api_base: http://127.0.0.1:{c["twilio"].port}
                    price_per_segment: {PRICE}
                    caps: {{max_messages: 5}}
                    status_callback: {{listen_host: 127.0.0.1, listen_port: {_free_port()}}}
              - code: "131016"
                name: 千代田区
                channels:
                  - {{id: chat, kind: webhook, sim: {{latency: 10ms}}}}
                  - {{id: mail, kind: mail, to: drill@chiyoda.example.lg.jp, sim: {{latency: 10ms}}}}
                  - {{id: sms, kind: twilio, to: ["+819011110002"], sim: {{latency: 10ms}}}}
            """
        ),
        encoding="utf-8",
    )
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tsunagari(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_tsunagari(*args, cwd=cwd, env=SECRETS)


def records(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.strip()]


@pytest.fixture
def workdir(tmp_path: Path, counters: dict[str, Counter]) -> Path:
    live_registry(tmp_path, counters)
    (tmp_path / "test_dry.py").write_text(SCENARIO, encoding="utf-8")
    return tmp_path


def test_the_counters_count(counters: dict[str, Counter]) -> None:
    """The ground truth of "contacted nothing" works: one connection is one count."""
    with socket.create_connection(("127.0.0.1", counters["smtp"].port), timeout=5):
        pass
    for _ in range(200):
        if counters["smtp"].connections:
            break
        threading.Event().wait(0.01)
    assert counters["smtp"].connections == 1


def test_run_dry_run_lists_every_send_and_contacts_nothing(
    workdir: Path, counters: dict[str, Counter]
) -> None:
    done = tsunagari(
        "run", "test_dry.py", "--registry", "registry.yaml", "--live", "--dry-run", cwd=workdir
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert {name: c.connections for name, c in counters.items()} == dict.fromkeys(counters, 0)
    assert sorted(p.name for p in workdir.iterdir()) == ["registry.yaml", "test_dry.py"]
    assert "Dry run: would send (nothing was sent)" in done.stdout
    assert "Nothing was sent." in done.stdout
    plan = [r for r in records(done.stderr) if r["event"] == "would_send"]
    assert records(done.stderr)[-1]["event"] == "run_finished"

    first = [r for r in plan if r["step"] == "broadcast"]
    assert [(r["municipality_code"], r["channel_id"]) for r in first] == [
        ("131211", "chat"), ("131211", "mail"), ("131211", "sms"),
        ("131016", "chat"), ("131016", "mail"), ("131016", "sms"),
    ]  # fmt: skip
    by = {(r["municipality_code"], r["channel_id"]): r for r in first}
    assert by["131211", "chat"]["live"] is True and by["131016", "chat"]["live"] is False
    # recipients only from the registry
    assert by["131211", "mail"]["recipients"] == [
        "staff1@adachi.example.lg.jp",
        "staff2@adachi.example.lg.jp",
    ]
    assert by["131211", "sms"]["recipients"] == PHONES
    assert by["131016", "sms"]["recipients"] == ["+819011110002"]
    for row in plan:
        if row["messages"]:
            assert row["marker"] == MARKER
            assert row["preview"].startswith(MARKER)
            assert f"[{TOKEN_PLACEHOLDER}]" in row["preview"]
    # the cost estimate is the cost guard's: segments × price per registered recipient
    segments = count_segments(
        DrillMessage.new("全職員は参集してください。", marker=MARKER).render()
    ).segments
    sms = by["131211", "sms"]
    assert sms["segments"] == 2 * segments
    assert sms["cost"] == pytest.approx(2 * segments * PRICE)
    assert sms["currency"] == "USD"
    # a later step that would cross the cap (5 messages: 2 + 2 + 2) is shown as refused
    third = [r for r in plan if r["step"] == "second_sms_step_crosses_the_cap"]
    assert len(third) == 1 and "cap is 5" in third[0]["refused"]
    # the outage takes the live chat away: the fallback plans it as not sent
    outage = [r for r in plan if r["action"] == "outage"]
    assert [(r["municipality_code"], r["messages"]) for r in outage] == [("131211", 0)]
    assert "the live channel is skipped" in outage[0]["note"]
    chain = [r for r in plan if r["action"] == "fallback" and r["municipality_code"] == "131211"]
    assert [(r["channel_id"], r["messages"]) for r in chain] == [
        ("chat", 0),
        ("mail", 2),
        ("sms", 2),
    ]
    assert "taken away by the drill's outage" in chain[0]["note"]
    assert "only if not reached within 2 s" in chain[1]["note"]
    other = [r for r in plan if r["action"] == "fallback" and r["municipality_code"] == "131016"]
    assert "sent first" in other[0]["note"] and other[0]["messages"] == 1
    # no secret reaches any output
    for secret in SECRETS.values():
        assert secret not in done.stdout + done.stderr


def test_a_live_channel_without_live_is_refused_in_a_dry_run_too(
    workdir: Path, counters: dict[str, Counter]
) -> None:
    done = tsunagari("run", "test_dry.py", "--registry", "registry.yaml", "--dry-run", cwd=workdir)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "need --live: 131211/chat, 131211/mail" in done.stdout + done.stderr
    assert sum(c.connections for c in counters.values()) == 0


def test_a_real_run_without_live_contacts_nothing(
    workdir: Path, counters: dict[str, Counter]
) -> None:
    """Live sends need --live: the same registry, no --dry-run, no --live → exit 2, and no
    live endpoint is contacted. (The Twilio API on loopback is not live by design — a local
    Twilio — so the steps that address only SMS do run against it.)"""
    done = tsunagari(
        "run", "test_dry.py", "--registry", "registry.yaml", "--out", "out", cwd=workdir
    )
    assert done.returncode == 2, done.stdout + done.stderr
    live = ("hook", "observer", "smtp", "imap")
    assert {name: counters[name].connections for name in live} == dict.fromkeys(live, 0)
    assert counters["twilio"].connections > 0  # the counters do see what is contacted


class Contacts:
    """Every socket connect and listen in this process, every simulator started, every probe
    opened. (A bare ``bind`` is not counted: libraries probe IPv6 support with one.)"""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        for name in ("connect", "connect_ex", "listen"):
            original = getattr(socket.socket, name)

            def spy(sock: socket.socket, *args: Any, _n: str = name, _o: Any = original) -> Any:
                self.calls.append(f"{_n}{args}")
                return _o(sock, *args)

            monkeypatch.setattr(socket.socket, name, spy)
        from probes.base import Probe
        from probes.sim.base import Simulator

        async def no_start(sim: Any) -> None:
            self.calls.append(f"simulator {type(sim).__name__}")

        async def no_open(probe: Any) -> None:
            self.calls.append(f"probe.open {probe.channel_id}")

        monkeypatch.setattr(Simulator, "start", no_start)
        monkeypatch.setattr(Probe, "open", no_open)


def test_simulated_channels_start_no_simulator(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """In process, every socket call and simulator start is watched: there are none."""
    registry = pytester.path / "registry.yaml"
    registry.write_text(
        (ROOT / "drills" / "data" / "demo_registry.yaml").read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    pytester.makepyfile(
        test_sim=SCENARIO.replace('to="131211"', 'to="131041"'),
        test_surge="def test_surge(drill):\n"
        "    drill.surge([5, 10], channels='chat', to='131211', each='2s').expect(holds_up_to='10/s')\n",
    )
    pytester.makeini(  # the ini setting, this time: the options table gives every option one
        "[pytest]\naddopts = --strict-markers -p no:asyncio -p no:cacheprovider\n"
        "tsunagari_registry = registry.yaml\ntsunagari_dry_run = true\n"
    )
    contacts = Contacts(monkeypatch)
    result = pytester.runpytest_inprocess("--lang=en", "-rs")
    result.assert_outcomes(passed=4, skipped=1)
    assert contacts.calls == []
    out = result.stdout.str()
    assert "would send" in out and "Nothing was sent." in out
    assert "has no .reachability" in out  # the test that reads results is skipped, saying why
    assert "surge (surge)" in out and "load of about 30" in out  # rest, 5/s, 10/s × 2 s
    assert not (pytester.path / "tsunagari-out").exists()


def test_demo_dry_run_contacts_nothing_and_writes_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from drills.operator.demo import plan_demo

    monkeypatch.chdir(tmp_path)
    contacts = Contacts(monkeypatch)
    assert plan_demo(lang="ja", repeat=2) == 0
    assert contacts.calls == []
    out = capsys.readouterr().out
    assert "試行（--dry-run）: 送信予定（何も送信していません）" in out
    assert "送信予定 42 通（21 チャネル）" in out  # 7 municipalities × 3 channels × 2
    assert list(tmp_path.iterdir()) == []


def test_demo_dry_run_command(tmp_path: Path) -> None:
    done = tsunagari("demo", "--dry-run", "--repeat", "1", "--out", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "would send 21 messages over 21 channels. Nothing was sent." in done.stdout
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- marker and token


def test_no_option_can_remove_the_marker_or_the_token() -> None:
    """The options table has nothing that touches the marker or the token."""
    words = ("marker", "token", "mark", "label", "prefix", "plain", "unmarked")
    for option in OPTIONS:
        text = f"{option.name} {option.flag} {option.ini}".lower()
        assert not any(w in text for w in words), option


BAD_KEYS = {
    "empty-marker": ("defaults: {marker: ''}", ""),
    "null-marker": ("defaults: {marker: null}", ""),
    "marker-without-訓練": ("defaults: {marker: お知らせ}", ""),
    "defaults-token-off": ("defaults: {token: false}", ""),
    "defaults-no-token": ("defaults: {marker: 【訓練】, no_token: true}", ""),
    "channel-marker": ("", ", marker: ''"),
    "channel-token": ("", ", token: false"),
    "channel-no-marker": ("", ", no_marker: true"),
    "channel-raw": ("", ", raw: true"),
}


def _registry_text(defaults: str, channel: str) -> str:
    return (
        f'{defaults}\nmunicipalities:\n  - code: "131211"\n    name: 足立区\n    channels:\n'
        f"      - {{id: chat, kind: webhook, sim: {{latency: 10ms}}{channel}}}\n"
    )


@pytest.mark.parametrize("case", list(BAD_KEYS))
def test_no_registry_key_can_remove_the_marker_or_the_token(tmp_path: Path, case: str) -> None:
    from drills.core.errors import RegistryError
    from drills.core.registry import load_registry

    path = tmp_path / "registry.yaml"
    path.write_text(_registry_text(*BAD_KEYS[case]), encoding="utf-8")
    with pytest.raises(RegistryError) as refused:
        load_registry(path)
    assert f"{path}:" in refused.value.render("en")


def test_a_registry_that_drops_the_marker_stops_the_dry_run_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "registry.yaml").write_text(
        _registry_text("defaults: {marker: ''}", ""), encoding="utf-8"
    )
    (tmp_path / "test_one.py").write_text(
        "def test_one(drill):\n    drill.broadcast('x', channels='chat')\n", encoding="utf-8"
    )
    done = tsunagari("run", "test_one.py", "--registry", "registry.yaml", "--dry-run", cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "registry.yaml:1: defaults.marker" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
