"""``tsunagari serve`` for ``/probe``: its help, serving without a journal, the
minimum-interval and rate-limit options reaching the checks, ``module=`` (issue 14)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from drills.cli import main
from tests.metrics.test_serve import Exporter

REGISTRY = """\
municipalities:
  - code: "131211"
    name: 足立区
    channels:
      - {id: chat, kind: webhook, sim: {}}
"""


@pytest.mark.parametrize(("lang", "words"), [("ja", "送信せずに確認"), ("en", "without sending")])
def test_serve_help_names_probe(lang: str, words: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--lang", lang, "serve", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "/probe?target=131211/mail" in text and words in text
    assert "--rate-limit" in text and "--check-interval-for" in text
    with pytest.raises(SystemExit):
        main(["--lang", lang, "--help"])
    assert "/probe" in capsys.readouterr().out  # the command list says it too


def test_probe_is_served_without_a_journal(tmp_path: Path) -> None:
    registry = tmp_path / "registry.yaml"
    registry.write_text(REGISTRY, encoding="utf-8")
    missing = tmp_path / "no-journal.sqlite"
    exporter = Exporter(
        *("--journal", str(missing), "--registry", str(registry), "--check-interval", "0"),
        *("--check-interval-for", "131211/chat=300s", "--rate-limit", "webhook=off"),
    )
    try:
        exporter.start()
        url = f"http://127.0.0.1:{exporter.port}/probe?target=131211/chat"
        first = httpx.get(url, timeout=20)
        assert first.status_code == 200
        assert 'tsunagari_check_up{channel_id="chat"' in first.text
        assert "cached result" not in first.text
        # --check-interval is 0, but this target's own interval (300 s) serves the cache
        again = httpx.get(url, timeout=20)
        assert "cached result" in again.text and "minimum interval 300 s" in again.text
        assert exporter.scrape().status_code == 200  # /metrics: no drill results, no error
        tls = httpx.get(url + "&module=tls", timeout=20)
        assert tls.status_code == 200 and "# module tls" in tls.text
        assert 'stage="observer.tls"' in tls.text and 'stage="observer.read"' not in tls.text
        assert "cached result" not in tls.text  # cached apart from the full check
        bad = httpx.get(url + "&module=icmp", timeout=20)
        assert bad.status_code == 400 and "module is full or tls" in bad.text
    finally:
        exporter.kill()
    assert exporter.proc is not None
    assert not missing.exists()  # nothing was created in its place


def test_serve_needs_a_journal_or_a_registry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "none.sqlite")
    assert main(["--lang", "en", "serve", "--journal", missing]) == 2
    err = capsys.readouterr().err
    assert "no journal" in err and "give --registry" in err
    assert main(["--lang", "ja", "serve", "--journal", missing]) == 2
    assert "--registry" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--rate-limit", "slak=1/60s"], "no kind 'slak'"),
        (["--check-interval-for", "lineworks=soon"], "cannot read --check-interval-for"),
        (["--check-interval-for", "=5m"], "cannot read --check-interval-for"),
    ],
)
def test_bad_preflight_options_exit_2(
    option: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = tmp_path / "registry.yaml"
    registry.write_text(REGISTRY, encoding="utf-8")
    argv = ["--lang", "en", "serve", "--registry", str(registry), *option]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
