"""``tsunagari surge`` selects its channel before resolving secrets, as ``run`` does (issue 19).

Another municipality's unset ``env:`` variable does not stop a surge on a channel that
needs none; the surged channel's own unset secret still does (exit 2, file and line).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from drills.cli import main
from probes.sim.base import closed_port

REGISTRY = """\
municipalities:
  - code: "131016"
    name: 千代田区
    channels:
      - id: chat
        kind: matrix
        homeserver: https://matrix.example.lg.jp
        room: "!drill:example.lg.jp"
        sender: {{user: "@drill-bot:example.lg.jp", token: env:TSG_UNSET_CHIYODA}}
  - code: "131211"
    name: 足立区
    channels:
      - id: live
        kind: webhook
        url: "http://127.0.0.1:{port}/hooks/x"
"""


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("TSG_UNSET_CHIYODA", raising=False)
    path = tmp_path / "registry.yaml"
    path.write_text(REGISTRY.format(port=closed_port()), encoding="utf-8")
    return path


def surge(registry: Path, channel: str) -> int:
    journal = registry.parent / "journal.sqlite"
    args = [str(registry), "--channel", channel, "--rates", "10", "--journal", str(journal)]
    return main(["--lang", "en", "surge", *args, "--live"])


def test_another_municipalitys_unset_secret_does_not_stop_the_surge(
    registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Past the registry: the surge guard is what refuses (this channel has no allowance).
    assert surge(registry, "131211/live") == 2
    err = capsys.readouterr().err
    assert "no surge allowance" in err and "TSG_UNSET_CHIYODA" not in err, err


def test_the_surged_channels_own_unset_secret_is_refused_naming_the_line(
    registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert surge(registry, "131016/chat") == 2
    err = capsys.readouterr().err
    assert f"{registry}:9: municipalities[0].channels[0].sender.token" in err, err
    assert "cannot resolve secret env:TSG_UNSET_CHIYODA" in err
