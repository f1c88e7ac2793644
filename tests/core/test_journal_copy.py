"""``tsunagari journal copy``: SQLite → PostgreSQL → SQLite loses nothing, row for row.

The source is a real drill (simulated channels) with a step event, its digest and the
metrics' totals (made by a scrape), so every table has rows to compare.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drills.cli import main
from drills.core.delivery import Delivery, Outcome
from drills.core.journal import open_journal
from drills.core.journal.copy import TABLES, DestinationNotEmpty, copy_rows, table_rows
from drills.core.registry import parse_registry
from drills.metrics.collector import exposition
from drills.operator.scenario import open_drill
from probes.sim.base import free_port
from tests.faults.checks import assert_no_traceback

REGISTRY = """\
defaults: {slo: {latency: 5s}}
municipalities:
  - {code: "131211", name: 足立区, channels: [
      {id: chat, kind: webhook, sim: {latency: 30ms}},
      {id: mail, kind: webhook, sim: {latency: 60ms}}]}
  - {code: "131016", name: 千代田区, channels: [
      {id: chat, kind: webhook, sim: {latency: 40ms}}]}
"""


def drill_into(target: str, vantage: str) -> str:
    with open_drill(
        parse_registry(REGISTRY, "r.yaml"), target, scenario="首都直下", vantage=vantage
    ) as drill:
        drill.broadcast("参集してください", timeout=5)
        run_id = drill.ctx.run_id
    with open_journal(target) as journal:
        journal.record_event(run_id, "note", {"who": "本部", "n": 1, "x": 0.1})
        exposition(journal)  # stores the run's digest and the metrics' totals
    return run_id


def rows(target: str) -> dict[str, list[tuple[object, ...]]]:
    with open_journal(target, read_only=True) as journal:
        return {table: [tuple(r) for r in table_rows(journal, table)] for table in TABLES}


@pytest.fixture
def source(tmp_path: Path) -> str:
    target = str(tmp_path / "source.sqlite")
    drill_into(target, "LGWAN")
    drill_into(target, "テレワーク")
    return target


def test_sqlite_to_postgresql_and_back_keeps_every_row(source, pg_url, tmp_path, capsys):
    back = str(tmp_path / "back.sqlite")
    assert main(["--lang", "en", "journal", "copy", source, pg_url]) == 0
    out = capsys.readouterr().out
    assert main(["journal", "copy", pg_url, back, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["rows"] == {"runs": 2, "deliveries": 6, "events": 2, "digests": 2, "totals": 2}
    assert data["source"] == pg_url and data["destination"] == back
    before = rows(source)
    assert all(before[table] for table in TABLES), {t: len(r) for t, r in before.items()}
    assert len(before["runs"]) == 2 and len(before["deliveries"]) == 6
    assert rows(pg_url) == before  # ids, times (float8), JSON text, insertion order
    assert rows(back) == before
    assert "deliveries (rows)  6" in out
    # The copied identities continue after the largest id copied: nothing collides.
    with open_journal(pg_url) as journal:
        run = journal.begin_run(scenario="次")
        journal.record(
            Delivery(run, "s", "131211", "足立区", "chat", "webhook", "t1", Outcome.LOST)
        )
        ids = [r[0] for r in table_rows(journal, "deliveries")]
        assert ids[-1] == max(r[0] for r in before["deliveries"]) + 1
        assert journal.runs()[-1]["run_id"] == run  # after the copied runs


def test_a_destination_with_runs_is_refused_unless_appending(source, pg_url, tmp_path, capsys):
    assert main(["--lang", "en", "journal", "copy", source, pg_url]) == 0
    first = rows(pg_url)
    capsys.readouterr()
    assert main(["--lang", "en", "journal", "copy", source, pg_url]) == 2
    out, err = capsys.readouterr()
    assert_no_traceback(out + err)
    ja, en = err.strip().splitlines()
    assert "既に 2 件の実行" in ja and "already holds 2 runs" in en and "--append" in en
    assert rows(pg_url) == first  # left as it was

    newer = drill_into(source, "モバイル")
    assert main(["--lang", "en", "journal", "copy", source, pg_url, "--append"]) == 0
    out = capsys.readouterr().out
    assert "runs already there  2" in out
    after = rows(pg_url)
    assert [r[0] for r in after["runs"]] == [r[0] for r in rows(source)["runs"]]
    added = [r for r in after["deliveries"] if r[1] == newer]
    assert len(added) == 3 and min(r[0] for r in added) > max(r[0] for r in first["deliveries"])
    assert after["totals"] == []  # folded again from the merged history on the next read


def test_copy_rows_refuses_in_one_piece(source, tmp_path):
    dst = str(tmp_path / "dst.sqlite")
    drill_into(dst, "LGWAN")
    before = rows(dst)
    with open_journal(source, read_only=True) as a, open_journal(dst) as b:
        with pytest.raises(DestinationNotEmpty):
            copy_rows(a, b)
    assert rows(dst) == before


def test_messages_never_show_the_password(source, capsys, tmp_path):
    secret = "Hunter2-not-for-logs"
    closed = f"postgresql://drill:{secret}@127.0.0.1:{free_port()}/x?connect_timeout=3"
    code = main(["--lang", "en", "journal", "copy", source, closed])
    out, err = capsys.readouterr()
    assert code == 3, out + err
    assert_no_traceback(out + err)
    assert secret not in out + err and "postgresql://drill:***@127.0.0.1" in err
    ja, en = err.strip().splitlines()
    assert "使えません" in ja and "cannot connect" in en

    assert main(["--lang", "en", "journal", "copy", str(tmp_path / "none.sqlite"), source]) == 2
    err = capsys.readouterr().err
    assert "no journal at" in err and not (tmp_path / "none.sqlite").exists()
    assert main(["--lang", "ja", "journal", "copy", source, f"sqlite:///{source}"]) == 2
    assert "同じ記録" in capsys.readouterr().err


def test_a_row_the_destination_refuses_leaves_it_unchanged(source, pg_url, capsys):
    """SQLite lets in a delivery of a run it does not have (no foreign keys enforced);
    PostgreSQL refuses it half-way through the copy, and the whole copy is undone."""
    with open_journal(source) as journal:
        journal.record(
            Delivery("ghost", "s", "131211", "足立区", "chat", "webhook", "t", Outcome.LOST)
        )
    code = main(["--lang", "en", "journal", "copy", source, pg_url])
    out, err = capsys.readouterr()
    assert code == 3, out + err
    assert_no_traceback(out + err)
    ja, en = err.strip().splitlines()
    assert "deliveries の行をコピーできませんでした" in ja
    assert "a row of deliveries could not be copied" in en and "unchanged" in en
    assert all(not found for found in rows(pg_url).values())  # not even the runs


def test_the_module_example_runs():
    import doctest

    import drills.core.journal.copy as module

    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
