"""The mail simulator as a process of its own: a far end to put inside a network namespace.

    far = MailFarEnd.start(ns, channel="131211/mail", to="drill@example.lg.jp")
    far.port, far.user, far.password, far.maildir     # what the registry channel needs
    ...                                               # the drill, outside the namespace
    ledger = far.finish()                             # its ground truth, as a Ledger

The child (``python -m tests.servers.mail_far_end``) runs
:class:`probes.sim.mail.MailSimulator` on the namespace's address, prints one
JSON line with the channel's port, login and Maildir, serves until its stdin
closes, then prints its ledger as one JSON line and exits. The ledger's times are
the machine's monotonic clock, which a network namespace shares with the harness
(probes/sim/ledger.py), so the harness compares them with its own records as is.
The Maildir is on the shared file system: the harness watches it from outside.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probes.sim.base import SimKnobs
from probes.sim.ledger import Fate, Ledger
from probes.sim.mail import MailSimulator
from tests.servers.netns import NetNamespace

__all__ = ["MailFarEnd"]

_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class MailFarEnd:
    proc: subprocess.Popen[str]
    port: int
    user: str
    password: str
    maildir: str

    @classmethod
    def start(cls, ns: NetNamespace, *, channel: str, to: str) -> MailFarEnd:
        proc = ns.popen(
            sys.executable, "-m", "tests.servers.mail_far_end", "--host", ns.inner_ip,
            "--channel", channel, "--to", to,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=_ROOT,
        )  # fmt: skip
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            proc.wait(10)
            err = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"the mail far end did not start in {ns.name}:\n{err[-2000:]}")
        ready = json.loads(line)
        return cls(proc, ready["port"], ready["user"], ready["password"], ready["maildir"])

    def finish(self) -> Ledger:
        """Stop the far end; its ledger, rebuilt from what it wrote down."""
        out, err = self.proc.communicate(input="", timeout=10)
        lines = out.strip().splitlines()
        assert self.proc.returncode == 0 and lines, f"far end failed:\n{err[-2000:]}"
        return _ledger(json.loads(lines[-1]))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=10)


def _ledger(data: dict[str, Any]) -> Ledger:
    ledger = Ledger(data["kind"])
    for e in data["entries"]:
        for code in e["refusal_codes"]:
            ledger.refused(e["channel"], e["token"], e["recipient"], code=code, final=False)
        if e["received_at"] is not None:
            entry = ledger.received(e["channel"], e["token"], e["recipient"], at=e["received_at"])
            if e["visible_at"] is not None:
                ledger.visible(entry, at=e["visible_at"])
            elif e["fate"] == Fate.DROPPED:
                ledger.dropped(entry, e["detail"])
    for o in data["outages"]:
        ledger.down(o["channel"], True, at=o["start"])
        if o["end"] is not None:
            ledger.down(o["channel"], False, at=o["end"])
    return ledger


async def _serve(host: str, channel: str, to: str) -> None:
    sim = MailSimulator(seed=0, host=host)
    settings = sim.add_channel(channel, SimKnobs(), {"to": [to]})
    await sim.start()
    ch = sim.channel(channel)
    ready = {"port": ch.port, "user": ch.user, "password": ch.password}
    print(json.dumps({**ready, "maildir": settings["maildir"]}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until stdin closes
    await sim.stop()
    book = {
        "kind": sim.ledger.kind,
        "entries": [dataclasses.asdict(e) for e in sim.ledger.entries()],
        "outages": [dataclasses.asdict(o) for o in sim.ledger.outages()],
    }
    print(json.dumps(book), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", required=True)
    parser.add_argument("--channel", required=True)
    parser.add_argument("--to", required=True)
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.host, args.channel, args.to))


if __name__ == "__main__":
    main()
