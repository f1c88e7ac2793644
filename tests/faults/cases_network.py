"""Fault matrix, network rows: a lossy, slow or broken link, in a namespace the test makes.

The far end — the mail simulator, as a process of its own
(tests/servers/mail_far_end.py) — runs inside a network namespace joined to the
host by one veth pair (tests/servers/netns.py); the harness stays outside and
drills a live ``mail`` channel pointed at the namespace's address, through the
real runner (:func:`tests.faults.mail_drill.drill_mail`). Ground truth is the far
end's ledger (when it took each message, when it stored it in the Maildir),
compared record by record with :func:`drills.core.truth.compare`.

- ``net-loss-30pct`` — netem ``loss 30%`` on the far end's replies; where the kernel
  has no netem, nftables ``numgen random mod 10 < 3 drop`` on what comes into the
  namespace (a loss on the wire for the harness). Packets were dropped, TCP resent
  them (RetransSegs), and every record agrees with the ledger.
- ``net-delay-400ms-jitter`` — netem ``delay 400ms 100ms``; skipped with the kernel's
  own message where netem is refused (nothing else here delays a link honestly).
- ``net-link-down-5s`` — the namespace's end of the link goes down for 5 s while
  messages are sent 1 s apart; the ledger says which arrived late (TCP resent the
  SYN) and which never, and the records must say the same.

Skipped with the reason where namespaces themselves are refused.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from drills.core.delivery import Delivery, Outcome
from drills.core.truth import compare
from probes.sim.ledger import Ledger
from tests.faults.mail_drill import (
    CODE,
    TO,
    DrillRecord,
    assert_sound,
    drill_mail,
    mail_channel,
    secret,
)
from tests.faults.matrix import FaultCase
from tests.servers.mail_far_end import MailFarEnd
from tests.servers.netns import NamespaceRefused, NetNamespace, tcp_counters

__all__ = ["CASES"]


@dataclass
class NetDrill:
    record: DrillRecord
    ledger: Ledger
    ns: NetNamespace

    def sent(self, d: Delivery) -> float:
        return float(d.extra["sent_mono"])

    def assert_agrees(self) -> None:
        found = compare(self.record.deliveries, [self.ledger])
        assert not found, "\n".join(map(str, found))


@contextlib.contextmanager
def _namespace() -> Iterator[NetNamespace]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (ip netns add)")
    try:
        ns = NetNamespace().__enter__()
    except (NamespaceRefused, OSError) as exc:  # OSError: no iproute2 at all
        pytest.skip(f"network namespaces refused here: {exc}")
    try:
        yield ns
    finally:
        ns.remove()


def _drill(
    tmp: Path,
    ns: NetNamespace,
    *,
    timeout: float,
    slo: str,
    repeat: int,
    interval: float = 0.0,
    during: Callable[[MailFarEnd], None] | None = None,
) -> NetDrill:
    """A drill of *repeat* messages to the far end inside *ns*; its ledger afterwards."""
    far = MailFarEnd.start(ns, channel=f"{CODE}/mail", to=TO)
    try:
        smtp = {
            "host": ns.inner_ip,
            "port": far.port,
            "user": far.user,
            "password": secret(tmp, "far-end", far.password),
            "timeout": "10s",
        }
        channel = mail_channel(tmp, smtp=smtp, maildir=far.maildir, observed=[TO])
        act = (lambda: during(far)) if during is not None else None
        record = drill_mail(
            tmp, channel, timeout=timeout, slo=slo, repeat=repeat, interval=interval, during=act
        )
        ledger = far.finish()
    finally:
        far.kill()
    return NetDrill(record, ledger, ns)


def packet_loss(tmp: Path) -> None:
    with _namespace() as ns:
        refused = ns.netem("loss", "30%")  # on the far end's replies
        if refused is None:
            resent = ns.tcp_counters  # the far end resends what netem lost
        else:  # no sch_netem: nftables drops 30 % of what comes in; the harness resends
            try:
                ns.nft_loss(30)
            except (NamespaceRefused, OSError) as exc:
                pytest.skip(f"tc netem refused ({refused}) and nftables too ({exc})")
            resent = tcp_counters  # the host namespace's counters (machine-wide: ≥ ours)
        before = resent()["RetransSegs"]
        run = _drill(tmp, ns, timeout=12, slo="12s", repeat=4)
        retransmitted = resent()["RetransSegs"] - before
        dropped = ns.netem_dropped() if refused is None else ns.nft_dropped()
    run.assert_agrees()
    # What was done really happened: packets were dropped and TCP resent them.
    assert dropped > 0, "no packet was dropped"
    assert retransmitted > 0, f"{dropped} packets dropped, none resent"
    assert [d for d in run.record.deliveries if d.outcome.reached], run.record.deliveries
    for d in run.record.deliveries:
        entry = run.ledger.entry(d.token, d.recipient)
        if entry is None or entry.visible_at is None:  # never got through within 10 s
            assert d.outcome is Outcome.LOST, d
    assert_sound(run.record, count=4)


def delay_jitter(tmp: Path) -> None:
    with _namespace() as ns:
        refused = ns.netem("delay", "400ms", "100ms")
        if refused is not None:
            pytest.skip(f"tc netem refused by the kernel ({refused}); no honest delay without it")
        run = _drill(tmp, ns, timeout=15, slo="15s", repeat=3)
    run.assert_agrees()
    for d in run.record.deliveries:
        assert d.outcome is Outcome.DELIVERED, d.reason
        # SYN-ACK, greeting, EHLO reply and the 250 after DATA each left the namespace
        # at least 300 ms late, one after another.
        assert d.accept_latency_s is not None and d.accept_latency_s >= 4 * 0.3, d
    assert_sound(run.record, count=3)


def link_down(tmp: Path) -> None:
    marks: dict[str, tuple[float, float]] = {}
    slo = 2.0

    def cut(far: MailFarEnd) -> None:
        new = Path(far.maildir) / "new"
        deadline = time.monotonic() + 5
        while not any(new.iterdir()):  # the first message arrived over a working link
            assert time.monotonic() < deadline, "the first message never arrived"
            time.sleep(0.01)
        marks["down"] = ns.link(up=False)
        time.sleep(5.0)  # the fault itself: 5 s without a link
        marks["up"] = ns.link(up=True)

    with _namespace() as ns:
        ns.pin_neighbour()  # a break along the path: TCP resends, no ARP failure
        run = _drill(tmp, ns, timeout=12, slo=f"{slo:g}s", repeat=6, interval=1.0, during=cut)
    run.assert_agrees()
    down, up = marks["down"][1], marks["up"][0]  # certainly down between these two instants
    entries = [run.ledger.entry(d.token, d.recipient) for d in run.record.deliveries]
    heard = [e.received_at for e in entries if e is not None and e.received_at is not None]
    assert not [t for t in heard if down < t < up], "the far end heard something while cut off"
    in_gap = [d for d in run.record.deliveries if down <= run.sent(d) < up]
    assert len(in_gap) >= 3, [run.sent(d) - down for d in run.record.deliveries]
    for d, e in zip(run.record.deliveries, entries, strict=True):
        if e is None or e.visible_at is None:
            assert d.outcome is Outcome.LOST, d  # never got through: lost, as the ledger says
            continue
        took = e.visible_at - run.sent(d)
        if d in in_gap:  # taken only once the link was back: TCP resent it
            assert e.received_at is not None and e.received_at >= up, (e, up)
        if not d.extra.get("slo_edge"):
            want = Outcome.LATE if took > slo else Outcome.DELIVERED
            assert d.outcome is want, (d.outcome, took, d.reason)
    # Sent 1 s or more into the gap, a message waits at least until the link is back.
    deep = [d for d in in_gap if up - run.sent(d) > slo]
    assert deep and all(d.outcome in (Outcome.LATE, Outcome.LOST) for d in deep), [
        (d.outcome, d.reason) for d in deep
    ]
    assert_sound(run.record, count=6)


CASES = [
    FaultCase("net-loss-30pct", packet_loss),
    FaultCase("net-delay-400ms-jitter", delay_jitter),
    FaultCase("net-link-down-5s", link_down),
]
