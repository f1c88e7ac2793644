"""A real Synapse homeserver on loopback for tests and benchmarks.

SQLite, one client listener on 127.0.0.1 (free port), no federation, users
registered over the shared-secret admin API (see FIELD-NOTES.md). Synapse
lives in its own virtual environment: ``$TSUNAGARI_SYNAPSE_VENV`` or
``~/.cache/tsunagari/synapse-venv`` (``scripts/bootstrap.sh setup`` makes it).

    hs = Synapse(tmp_dir)
    hs.start()                                  # ~2.5 s
    bot = hs.register("drill-bot")              # MatrixUser(user_id, token)
    room = hs.create_room(bot, invite=[watch])  # and hs.join(watch, room)
    hs.stop()
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from probes.sim.base import free_port

__all__ = ["MatrixUser", "Synapse", "synapse_venv"]

SHARED_SECRET = "test-only-registration-secret"

CONFIG = """\
server_name: "localhost"
pid_file: "{run}/homeserver.pid"
report_stats: false
listeners:
  - port: {port}
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: false
    x_forwarded: false
    resources: [{{names: [client], compress: false}}]
database: {{name: sqlite3, args: {{database: "{run}/homeserver.db"}}}}
media_store_path: "{run}/media"
signing_key_path: "{run}/localhost.signing.key"
log_config: "{run}/log.yaml"
registration_shared_secret: "{secret}"
macaroon_secret_key: "test-only-macaroon"
form_secret: "test-only-form"
enable_registration: false
trusted_key_servers: []
suppress_key_server_warning: true
federation_domain_whitelist: []
url_preview_enabled: false
presence: {{enabled: false}}
enable_metrics: false
bcrypt_rounds: 4
rc_message: {{per_second: {rc_per_second}, burst_count: {rc_burst}}}
rc_login:
  address: {{per_second: 10000, burst_count: 100000}}
  account: {{per_second: 10000, burst_count: 100000}}
  failed_attempts: {{per_second: 10000, burst_count: 100000}}
rc_registration: {{per_second: 10000, burst_count: 100000}}
rc_joins:
  local: {{per_second: 10000, burst_count: 100000}}
rc_room_creation: {{per_second: 10000, burst_count: 100000}}
rc_invites:
  per_room: {{per_second: 10000, burst_count: 100000}}
  per_user: {{per_second: 10000, burst_count: 100000}}
"""

LOG_CONFIG = """\
version: 1
formatters:
  precise: {{format: '%(asctime)s %(name)s %(levelname)s %(message)s'}}
handlers:
  file: {{class: logging.FileHandler, formatter: precise, filename: "{run}/homeserver.log"}}
root: {{level: WARNING, handlers: [file]}}
disable_existing_loggers: false
"""


def synapse_venv() -> Path:
    """Where Synapse's own virtual environment is."""
    default = Path.home() / ".cache" / "tsunagari" / "synapse-venv"
    return Path(os.environ.get("TSUNAGARI_SYNAPSE_VENV", default))


@dataclass(frozen=True)
class MatrixUser:
    user_id: str
    token: str


class Synapse:
    """One Synapse process with its own run folder and port."""

    def __init__(
        self,
        run_dir: Path,
        *,
        rc_per_second: float = 10000,
        rc_burst: int = 100000,
        venv: Path | None = None,
    ) -> None:
        self.run = Path(run_dir)
        self.venv = venv or synapse_venv()
        self.port = free_port()
        self.rc = (rc_per_second, rc_burst)
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(timeout=30.0, trust_env=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _python(self) -> Path:
        python = self.venv / "bin" / "python"
        if not python.exists():
            raise RuntimeError(
                f"Synapse is not installed at {self.venv}: run scripts/bootstrap.sh setup "
                "(or set TSUNAGARI_SYNAPSE_VENV)"
            )
        return python

    def start(self, timeout: float = 60.0) -> None:
        python = self._python()
        self.run.mkdir(parents=True, exist_ok=True)
        (self.run / "media").mkdir(exist_ok=True)
        config = self.run / "homeserver.yaml"
        config.write_text(
            CONFIG.format(
                run=self.run,
                port=self.port,
                secret=SHARED_SECRET,
                rc_per_second=self.rc[0],
                rc_burst=self.rc[1],
            )
        )
        (self.run / "log.yaml").write_text(LOG_CONFIG.format(run=self.run))
        if not (self.run / "localhost.signing.key").exists():
            subprocess.run(
                [python, "-m", "synapse.app.homeserver", "-c", config, "--generate-keys"],
                check=True,
                capture_output=True,
                cwd=self.run,
            )
        with open(self.run / "stdout.log", "ab") as out:
            self.proc = subprocess.Popen(
                [python, "-m", "synapse.app.homeserver", "-c", config],
                cwd=self.run,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Synapse exited early: {self.log_tail()}")
            try:
                if self.http.get(f"{self.base_url}/_matrix/client/versions").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Synapse did not answer within {timeout}s: {self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        text = ""
        for name in ("stdout.log", "homeserver.log"):
            path = self.run / name
            if path.exists():
                text += path.read_text(errors="replace")[-chars:]
        return text

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def close(self) -> None:
        self.stop()
        self.http.close()

    # ------------------------------------------------------------------ client helpers

    def _call(self, method: str, path: str, user: MatrixUser | None = None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {user.token}"} if user else {}
        resp = self.http.request(method, f"{self.base_url}{path}", headers=headers, **kw)
        if resp.status_code >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {resp.status_code} {resp.text[:300]}")
        return resp.json()

    def register(self, localpart: str, *, admin: bool = False) -> MatrixUser:
        """Register a user over the shared-secret admin API; returns id and access token."""
        nonce = self._call("GET", "/_synapse/admin/v1/register")["nonce"]
        password = secrets.token_hex(8)
        mac = hmac.new(SHARED_SECRET.encode(), digestmod=hashlib.sha1)
        for part in (nonce, localpart, password, "admin" if admin else "notadmin"):
            if part != nonce:
                mac.update(b"\x00")
            mac.update(part.encode())
        body = {
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        data = self._call("POST", "/_synapse/admin/v1/register", json=body)
        return MatrixUser(data["user_id"], data["access_token"])

    def create_room(
        self, owner: MatrixUser, *, invite: list[MatrixUser] = (), encrypted: bool = False
    ) -> str:  # type: ignore[assignment]
        body: dict[str, Any] = {"preset": "private_chat", "invite": [u.user_id for u in invite]}
        if encrypted:
            body["initial_state"] = [
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }
            ]
        room_id: str = self._call("POST", "/_matrix/client/v3/createRoom", owner, json=body)[
            "room_id"
        ]
        return room_id

    def join(self, user: MatrixUser, room_id: str) -> None:
        self._call("POST", f"/_matrix/client/v3/join/{quote(room_id, safe='')}", user, json={})

    def override_ratelimit(
        self, admin: MatrixUser, user: MatrixUser, per_second: float, burst: int
    ) -> None:
        """Give one user its own message rate limit (Synapse admin API)."""
        path = f"/_synapse/admin/v1/users/{quote(user.user_id, safe='')}/override_ratelimit"
        body = {"messages_per_second": per_second, "burst_count": burst}
        self._call("POST", path, admin, json=body)
