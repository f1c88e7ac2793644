"""A private Postfix on loopback relaying everything to a Dovecot LMTP port.

Follows FIELD-NOTES.md: private main.cf/master.cf (chroot off everywhere),
queue, data and maillog under the run folder, ``postfix -c DIR start-fg``.
Optional STARTTLS with a test certificate. Deferred mail is retried quickly
(``queue_run_delay``) so a restarted Dovecot would still get it, as in life.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from probes.sim.base import free_port
from tests.servers.dovecot import port_open, wait_or_kill, wait_port, wait_port_closed

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"

_MAIN = """\
compatibility_level = 3.6
queue_directory = {run}/queue
data_directory = {run}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = postfix.drill.test
mydomain = drill.test
myorigin = drill.test
mydestination =
mynetworks = 127.0.0.0/8
relay_domains =
local_recipient_maps =
alias_maps =
alias_database =
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = permit_mynetworks, reject
transport_maps = {routes}
default_transport = lmtp:inet:127.0.0.1:{lmtp_port}
relay_transport = lmtp:inet:127.0.0.1:{lmtp_port}
maillog_file = {run}/maillog
maillog_file_prefixes = {run}
smtputf8_enable = no
biff = no
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
smtpd_banner = $myhostname ESMTP drill-test
{tls}
"""

_TLS = """\
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = may
"""


def _master_cf(smtpd_port: int) -> str:
    out = []
    for line in Path("/etc/postfix/master.cf").read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if line.startswith(("#", " ", "\t")) or len(fields) < 8:
            out.append(line)
            continue
        if fields[0] == "smtp" and fields[1] == "inet":
            fields[0] = f"127.0.0.1:{smtpd_port}"
        fields[4] = "n"  # no chroot: the run folder is not inside one
        out.append("  ".join(fields))
    return "\n".join(out) + "\n"


@dataclass
class Postfix:
    lmtp_port: int
    routes: dict[str, int] = field(default_factory=dict)  # domain -> another LMTP port
    cert_file: Path | None = None
    key_file: Path | None = None
    run: Path | None = None
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        if self.run is None:
            self.run = Path(tempfile.mkdtemp(prefix="tsg-postfix-"))
        self.run.chmod(0o755)
        self.port = self.port or free_port()

    @property
    def conf_dir(self) -> Path:
        assert self.run is not None
        return self.run / "etc"

    def write_config(self) -> None:
        assert self.run is not None
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        postfix_user = pwd.getpwnam("postfix")
        for sub in ("data", "queue"):
            (self.run / sub).mkdir(exist_ok=True)
        os.chown(self.run / "data", postfix_user.pw_uid, postfix_user.pw_gid)
        tls = _TLS.format(cert=self.cert_file, key=self.key_file) if self.cert_file else ""
        routes = " ".join(f"{d}=lmtp:inet:127.0.0.1:{p}" for d, p in self.routes.items())
        main = _MAIN.format(
            run=self.run,
            lmtp_port=self.lmtp_port,
            tls=tls,
            routes=f"inline:{{ {routes} }}" if routes else "",
        )
        (self.conf_dir / "main.cf").write_text(main, encoding="utf-8")
        (self.conf_dir / "master.cf").write_text(_master_cf(self.port), encoding="utf-8")
        shutil.copy("/etc/postfix/dynamicmaps.cf", self.conf_dir / "dynamicmaps.cf")

    def _postfix(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        # Postfix reports fatal errors to syslog, which does not exist here; `script`
        # gives it a terminal so they are printed instead (FIELD-NOTES.md).
        command = " ".join([POSTFIX, "-c", str(self.conf_dir), *args])
        return subprocess.run(
            ["script", "-eqc", command, "/dev/null"],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def start(self) -> Postfix:
        if port_open(self.port):
            raise RuntimeError(f"port {self.port} is already in use")
        self.write_config()
        check = self._postfix("check")
        if check.returncode != 0:
            raise RuntimeError(f"postfix check failed: {check.stdout}{check.stderr}")
        self.proc = subprocess.Popen(
            [POSTFIX, "-c", str(self.conf_dir), "start-fg"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        try:
            wait_port(self.port, timeout=20, proc=self.proc)
        except Exception:
            self.stop()
            raise RuntimeError("postfix did not start:\n" + self.log_text()[-2000:]) from None
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        self._postfix("stop", timeout=30)
        wait_or_kill(self.proc, 15)
        self.proc = None
        wait_port_closed(self.port)
        if self.run is not None:
            shutil.rmtree(self.run, ignore_errors=True)

    def log_text(self) -> str:
        assert self.run is not None
        try:
            return (self.run / "maillog").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def deferred(self) -> list[str]:
        """Queue ids Postfix has deferred (from its log)."""
        return re.findall(r"\b([0-9A-F]{6,})\b: .*status=deferred", self.log_text())
