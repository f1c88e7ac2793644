"""A private Dovecot (IMAP + LMTP) on loopback, run in the foreground by the tests.

Config follows FIELD-NOTES.md: passwd-file users, Maildir under the run folder
owned by ``nobody``, inet listeners on free loopback ports. With ``tls`` (a
``trustme`` CA) it also offers STARTTLS on the IMAP port and an IMAPS port; with
``quota`` (e.g. ``"4K"``) every mailbox has that storage limit (Dovecot's quota
plugin) and :meth:`Dovecot.fill` fills one before start.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from probes.sim.base import free_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"

_CONF = """\
base_dir = {run}/run
state_dir = {run}/state
instance_name = tsg-{name}
protocols = imap lmtp
listen = 127.0.0.1
log_path = {run}/dovecot.log
info_log_path = {run}/dovecot.log
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_username_format = %Ln
auth_failure_delay = {auth_delay}
mail_location = maildir:{run}/mail/%n
mail_uid = nobody
mail_gid = nogroup
mail_fsync = never
first_valid_uid = 1
login_trusted_networks = {trusted}
passdb {{
  driver = passwd-file
  args = {run}/users
}}
userdb {{
  driver = static
  args = home={run}/mail/%n
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
{quota}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""

# Dovecot's quota plugin (maildir backend): LMTP checks the quota at RCPT and refuses a
# recipient whose mailbox is full with ``552 5.2.2 … Quota exceeded``.
_QUOTA = """\
mail_plugins = $mail_plugins quota
protocol lmtp {{
  mail_plugins = $mail_plugins quota
}}
lmtp_rcpt_check_quota = yes
plugin {{
  quota = maildir:User quota
  quota_rule = *:storage={limit}
}}
"""


def _traversable_tmpdir(prefix: str) -> Path:
    # Dovecot's auth and mail processes run as unprivileged users: every folder
    # above the run folder must be traversable, which pytest's 0700 tmp dirs are not.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def wait_port(
    port: int, timeout: float = 10.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before port {port} opened")
        time.sleep(0.02)
    raise TimeoutError(f"port {port} did not open within {timeout}s")


def wait_port_closed(port: int, timeout: float = 5.0) -> None:
    """Wait until nothing listens on *port* any more (a stopped server's last listener)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and port_open(port):
        time.sleep(0.02)


def wait_or_kill(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait for a process we asked to stop; kill it if it does not within *timeout*."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@dataclass
class Dovecot:
    """One Dovecot instance. ``users`` maps login name to password."""

    run: Path = field(default_factory=lambda: _traversable_tmpdir("tsg-dovecot-"))
    users: dict[str, str] = field(default_factory=lambda: {"drill": "drillpass"})
    cert_file: Path | None = None  # PEM chain; enables STARTTLS + IMAPS
    key_file: Path | None = None
    auth_delay: str = "0"
    trusted_networks: str = ""
    quota: str | None = None  # e.g. "4K": every user's storage limit (quota plugin)
    imap_port: int = 0
    imaps_port: int = 0
    lmtp_port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.run.mkdir(parents=True, exist_ok=True)
        self.imap_port = self.imap_port or free_port()
        self.imaps_port = self.imaps_port or (free_port() if self.cert_file else 0)
        self.lmtp_port = self.lmtp_port or free_port()

    @property
    def tls(self) -> bool:
        return self.cert_file is not None

    def maildir(self, user: str = "drill") -> Path:
        return self.run / "mail" / user

    def write_config(self) -> Path:
        nobody = pwd.getpwnam("nobody")
        for sub in ("run", "state", "mail"):
            (self.run / sub).mkdir(exist_ok=True)
        os.chown(self.run / "mail", nobody.pw_uid, nobody.pw_gid)
        (self.run / "users").write_text(
            "".join(f"{u}:{{PLAIN}}{p}\n" for u, p in self.users.items()), encoding="utf-8"
        )
        if self.tls:
            ssl = f"ssl = yes\nssl_cert = <{self.cert_file}\nssl_key = <{self.key_file}"
        else:
            ssl = "ssl = no"
        conf = _CONF.format(
            run=self.run,
            name=self.run.name,
            ssl=ssl,
            auth_delay=self.auth_delay,
            trusted=self.trusted_networks,
            quota=_QUOTA.format(limit=self.quota) if self.quota else "",
            imap_port=self.imap_port,
            imaps_port=self.imaps_port,
            lmtp_port=self.lmtp_port,
        )
        path = self.run / "dovecot.conf"
        path.write_text(conf, encoding="utf-8")
        return path

    def fill(self, user: str, size: int) -> Path:
        """Before :meth:`start`: put one *size*-byte message into *user*'s Maildir (``new/``),
        owned by the mail user, as an earlier delivery would have left it."""
        nobody = pwd.getpwnam("nobody")
        box = self.maildir(user)
        for sub in ("tmp", "new", "cur"):
            (box / sub).mkdir(parents=True, exist_ok=True)
        path = box / "new" / f"{int(time.time())}.M1P1.filler"
        head = b"From: filler@example.lg.jp\r\nSubject: filler\r\n\r\n"
        path.write_bytes(head + b"x" * max(0, size - len(head)))
        for folder in (self.run / "mail", box, *(box / sub for sub in ("tmp", "new", "cur"))):
            os.chown(folder, nobody.pw_uid, nobody.pw_gid)
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
        return path

    def start(self) -> Dovecot:
        for port in (self.imap_port, self.lmtp_port, self.imaps_port):
            if port and port_open(port):
                raise RuntimeError(f"port {port} is already in use")
        conf = self.write_config()
        with open(self.run / "stderr.log", "ab") as stderr:
            self.proc = subprocess.Popen(
                [DOVECOT, "-F", "-c", str(conf)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,  # its own process group: stop() ends all of it
            )
        try:
            wait_port(self.imap_port, proc=self.proc)
            wait_port(self.lmtp_port, proc=self.proc)
        except Exception:
            self.stop()
            raise RuntimeError("dovecot did not start:\n" + self.log_text()[-2000:]) from None
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            # TERM to the whole group (master, imap, lmtp, auth) we started: the master
            # alone waits about a second for its children.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            wait_or_kill(self.proc, 10)
        self.proc = None
        wait_port_closed(self.imap_port)

    def remove(self) -> None:
        """Stop, then delete the run folder (mail included)."""
        self.stop()
        shutil.rmtree(self.run, ignore_errors=True)

    def log_text(self) -> str:
        parts = []
        for name in ("dovecot.log", "stderr.log"):
            with contextlib.suppress(OSError):
                parts.append((self.run / name).read_text(encoding="utf-8", errors="replace"))
        return "\n".join(parts)

    def logins(self, user: str = "drill") -> int:
        """How many IMAP logins of *user* the log shows."""
        return sum(
            1
            for line in self.log_text().splitlines()
            if "imap-login: Info: Login:" in line and f"user=<{user}>" in line
        )

    def __enter__(self) -> Dovecot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
