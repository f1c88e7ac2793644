"""A private PostgreSQL (Debian's ``postgresql`` package) on loopback, for tests.

``initdb`` into a temp dir, ``postgres`` in the foreground on a free port on
127.0.0.1 with its unix socket in the same temp dir: no system service, no
cluster of ``pg_ctlcluster``, nothing outside the run folder. ``fsync`` stays
on (the default) — the journal's durability is what the tests check.

PostgreSQL refuses to run as root: when the tests run as root the server runs
as the package's ``postgres`` user (``nobody`` if there is none), and the run
folder is handed to it. Trust authentication on loopback only (a test server).

    server = Postgres().start()
    url = server.create_database("t1")      # postgresql://tsunagari@127.0.0.1:PORT/t1
    ...
    server.stop()
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from probes.sim.base import free_port

BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
SUPERUSER = "tsunagari"


def find_bin() -> Path | None:
    """The folder with ``initdb`` and ``postgres`` (the newest Debian version), or None."""
    for folder in (*BIN_DIRS, *(Path(p) for p in os.environ.get("PATH", "").split(":") if p)):
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    return None


def missing_reason() -> str | None:
    """Why PostgreSQL cannot be started here (for ``pytest.skip``), or None."""
    if find_bin() is None:
        return "PostgreSQL binaries (initdb, postgres) not installed: apt-get install postgresql"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed: pip install -e '.[test]'"
    return None


def _server_user() -> pwd.struct_passwd | None:
    """The unprivileged user the server runs as when we are root; None when we are not."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root and neither user postgres nor nobody exists")


class Postgres:
    """One PostgreSQL server in its own run folder."""

    def __init__(self, run: Path | None = None) -> None:
        bindir = find_bin()
        if bindir is None:
            raise RuntimeError(missing_reason())
        self.bin = bindir
        self.run = run or Path(tempfile.mkdtemp(prefix="tsg-postgres-"))
        self.run.chmod(0o755)
        self.data = self.run / "data"
        self.sockets = self.run / "sockets"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.user = _server_user()

    # ------------------------------------------------------------------ lifecycle

    def _as_server(self) -> dict[str, Any]:
        if self.user is None:
            return {}
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}

    def start(self, timeout: float = 30.0) -> Postgres:
        self.sockets.mkdir(exist_ok=True)
        if self.user is not None:
            os.chown(self.run, self.user.pw_uid, self.user.pw_gid)
            os.chown(self.sockets, self.user.pw_uid, self.user.pw_gid)
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": str(self.run)}
        subprocess.run(
            [
                str(self.bin / "initdb"),
                *("-D", str(self.data), "-U", SUPERUSER),
                *("--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8"),
                "--no-sync",  # initdb's own files only: the server below runs with fsync on
            ],
            check=True,
            capture_output=True,
            env=env,
            cwd=self.run,
            **self._as_server(),
        )
        log = self.run / "postgres.log"
        with log.open("wb") as out:
            if self.user is not None:
                os.chown(log, self.user.pw_uid, self.user.pw_gid)
            self.proc = subprocess.Popen(
                [
                    str(self.bin / "postgres"),
                    *("-D", str(self.data), "-p", str(self.port), "-k", str(self.sockets)),
                    *("-c", "listen_addresses=127.0.0.1"),
                    *("-c", "fsync=on", "-c", "synchronous_commit=on"),
                    *("-c", "max_connections=60", "-c", "shared_buffers=32MB"),
                    *("-c", "logging_collector=off"),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.run,
                start_new_session=True,
                **self._as_server(),
            )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"postgres exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            with contextlib.suppress(psycopg.OperationalError):
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return
            time.sleep(0.05)
        raise TimeoutError(f"postgres not ready after {timeout} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return (self.run / "postgres.log").read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Fast shutdown (SIGINT: roll back sessions, checkpoint), killed if it hangs;
        the run folder is removed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        shutil.rmtree(self.run, ignore_errors=True)

    # ------------------------------------------------------------------ databases

    def url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def socket_url(self, database: str) -> str:
        """The same database over the unix socket in the run folder."""
        return f"postgresql://{SUPERUSER}@/{database}?host={self.sockets}&port={self.port}"

    def create_database(self, name: str) -> str:
        """A new, empty database; its URL (TCP on 127.0.0.1)."""
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
