"""A network namespace the test makes itself, joined to the host by one veth pair.

    with NetNamespace() as ns:            # raises NamespaceRefused(reason) where not allowed
        ns.inner_ip                       # 10.231.<k>.2, inside; the host side is .1
        ns.netem("loss", "30%")           # None, or the kernel's refusal (no sch_netem)
        ns.nft_loss(30)                   # nftables numgen: 30 % of what comes in
        ns.link(up=False)                 # the namespace's end of the link goes down

Only the veth pair and the namespace it creates are ever touched (iproute2 and
nftables commands, run as root); the host's own interfaces and routes are left
alone, and everything is removed on exit. netem shapes what leaves the namespace
(the far end's replies); the nftables loss drops what comes in (see ``nft_loss``).
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import time
from typing import Any

__all__ = ["NamespaceRefused", "NetNamespace", "tcp_counters"]

_SUBNET = "10.231"
_serial = itertools.count(1)


class NamespaceRefused(RuntimeError):
    """The machine will not let this process make namespaces or veth pairs (the reason)."""


def _ip(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *argv], capture_output=True, text=True, timeout=10)
    if check and done.returncode != 0:
        raise NamespaceRefused(f"ip {' '.join(argv)}: {done.stderr.strip()}")
    return done


def _free_block() -> int:
    """A /30 block number under 10.231.0.0/16 that no interface uses right now."""
    used = _ip("-4", "-o", "addr", "show").stdout
    for k in itertools.chain(range((os.getpid() + next(_serial)) % 250 + 1, 251), range(1, 251)):
        if f" {_SUBNET}.{k}." not in used:
            return k
    raise NamespaceRefused(f"no free block in {_SUBNET}.0.0/16")


class NetNamespace:
    """One namespace ``tsg-<pid>-<n>`` with a veth link ``10.231.k.1`` (host) ↔ ``.2`` (inside)."""

    def __init__(self) -> None:
        n = next(_serial)
        self.name = f"tsg-{os.getpid()}-{n}"
        tag = f"{os.getpid() % 10000}{n}"[-8:]
        self.host_if, self.inner_if = f"tsg{tag}h", f"tsg{tag}i"
        self.block = 0
        self._made: list[str] = []

    @property
    def host_ip(self) -> str:
        return f"{_SUBNET}.{self.block}.1"

    @property
    def inner_ip(self) -> str:
        return f"{_SUBNET}.{self.block}.2"

    def __enter__(self) -> NetNamespace:
        try:
            self.create()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def create(self) -> None:
        _ip("netns", "add", self.name)
        self._made.append("netns")
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.inner_if,
            "netns", self.name)  # fmt: skip
        self._made.append("veth")
        self.block = _free_block()
        _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        _ip("-n", self.name, "addr", "add", f"{self.inner_ip}/30", "dev", self.inner_if)
        _ip("-n", self.name, "link", "set", self.inner_if, "up")
        _ip("-n", self.name, "link", "set", "lo", "up")

    def remove(self) -> None:
        if "veth" in self._made:  # deleting one end deletes the pair
            _ip("link", "del", self.host_if, check=False)
        if "netns" in self._made:
            _ip("netns", "del", self.name, check=False)
        self._made.clear()

    # ------------------------------------------------------------------ inside

    def argv(self, *argv: str) -> list[str]:
        """*argv* run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self.argv(*argv), capture_output=True, text=True, timeout=10)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} in {self.name}: {done.stderr.strip()}")
        return done

    def popen(self, *argv: str, **kw: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(self.argv(*argv), text=True, **kw)

    def netem(self, *spec: str) -> str | None:
        """``tc qdisc add … root netem SPEC`` on the inner end; None, or the kernel's refusal."""
        done = self.run("tc", "qdisc", "add", "dev", self.inner_if, "root", "netem", *spec,
                        check=False)  # fmt: skip
        return None if done.returncode == 0 else done.stderr.strip() or f"exit {done.returncode}"

    def netem_dropped(self) -> int:
        shown = self.run("tc", "-s", "qdisc", "show", "dev", self.inner_if).stdout
        found = re.search(r"dropped (\d+)", shown)
        return int(found.group(1)) if found else 0

    def nft_loss(self, percent: int) -> None:
        """Drop *percent* % of the packets coming into the namespace, at random (nftables
        numgen) — a loss on the wire for the sender outside, which resends.

        Not on the way out: a packet dropped in the namespace's own output path is an
        error the far end's TCP is told about, not a packet lost on the wire.
        """
        assert 0 < percent < 100 and percent % 10 == 0, "whole tens: numgen mod 10"
        rules = (
            "table inet tsg_loss {\n"
            "  chain in {\n"
            "    type filter hook input priority 0; policy accept;\n"
            f"    numgen random mod 10 < {percent // 10} counter drop\n"
            "  }\n"
            "}\n"
        )
        done = subprocess.run(self.argv("nft", "-f", "-"), input=rules, capture_output=True,
                              text=True, timeout=10)  # fmt: skip
        if done.returncode != 0:
            raise NamespaceRefused(f"nft: {done.stderr.strip()}")

    def nft_dropped(self) -> int:
        shown = self.run("nft", "list", "table", "inet", "tsg_loss").stdout
        found = re.search(r"counter packets (\d+)", shown)
        return int(found.group(1)) if found else 0

    def pin_neighbour(self) -> None:
        """Make the host side's ARP entry for the inner address permanent.

        Without it a link that goes down on the far end's own segment ends every
        connection attempt in ``EHOSTUNREACH`` after ~3 s of failed ARP; with it the
        host keeps sending into the dead link and TCP resends (SYN at 1, 3, 7 s …) —
        the behaviour of a break further along the path, behind a router.
        """
        shown = self.run("ip", "-o", "link", "show", self.inner_if).stdout
        found = re.search(r"link/ether ([0-9a-f:]{17})", shown)
        assert found, shown
        _ip("neigh", "replace", self.inner_ip, "lladdr", found.group(1), "dev", self.host_if,
            "nud", "permanent")  # fmt: skip

    def link(self, *, up: bool) -> tuple[float, float]:
        """Set the namespace's end of the link up or down; the monotonic instants just
        before and just after the command (the change happened between them)."""
        before = time.monotonic()
        self.run("ip", "link", "set", self.inner_if, "up" if up else "down")
        return before, time.monotonic()

    def tcp_counters(self) -> dict[str, int]:
        """The namespace's own TCP counters (``/proc/net/snmp`` is per namespace)."""
        return tcp_counters(self.run("cat", "/proc/net/snmp").stdout)


def tcp_counters(snmp: str | None = None) -> dict[str, int]:
    """TCP counters of ``/proc/net/snmp`` (default: this process's namespace, the host's)."""
    if snmp is None:
        with open("/proc/net/snmp", encoding="ascii") as f:
            snmp = f.read()
    lines = [ln.split() for ln in snmp.splitlines()]
    heads, values = [ln for ln in lines if ln and ln[0] == "Tcp:"][:2]
    return {k: int(v) for k, v in zip(heads[1:], values[1:], strict=True)}
