"""Three vantage runners, three processes, one PostgreSQL journal, one combined view.

Each runner is ``tsunagari run --vantage … --journal postgresql://…`` in its own process
(simulated channels). A file barrier in the scenario makes all three runs be open at
once before any message is sent, so they really write at the same time (checked from
the journal's own start and end times). While they write, this process reads the
journal as ``serve`` and ``scorecard`` do (read-only) and checks that what it sees is
whole: a run shown ``finished`` has every delivery, and the combined view never shows a
vantage's finished run with a message missing. Then one vantage view and one scrape
show all three vantages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from drills.core.journal import RunStatus, open_journal
from drills.metrics.collector import exposition
from drills.reporting.vantage import vantage_view
from tests.faults.checks import assert_no_traceback
from tests.support import ROOT

VANTAGES = ("LGWAN", "テレワーク", "庁内LAN")
MUNIS = {"131211": "足立区", "131016": "千代田区", "132012": "八王子市"}
CHANNELS = ("chat", "mail")
PER_RUN = len(MUNIS) * len(CHANNELS)

REGISTRY = "defaults: {slo: {latency: 5s}}\nmunicipalities:\n" + "".join(
    f'  - {{code: "{code}", name: {name}, channels: ['
    + ", ".join(
        f"{{id: {cid}, kind: webhook, sim: {{latency: {{dist: uniform, low: 100ms, high: 900ms}}}}}}"
        for cid in CHANNELS
    )
    + "]}\n"
    for code, name in MUNIS.items()
)

SCENARIO = """\
import os, time
from pathlib import Path

def test_each_vantage(drill):
    barrier = Path(os.environ["TSG_BARRIER"])
    (barrier / os.environ["TSG_RUNNER"]).touch()
    deadline = time.monotonic() + 20
    while len(list(barrier.iterdir())) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)  # the other runners' runs are not open yet
    drill.broadcast("参集してください", timeout=10).expect(reached="100%", within="5s")
"""


def _runner(tmp: Path, url: str, vantage: str, n: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    env |= {"TSG_BARRIER": str(tmp / "barrier"), "TSG_RUNNER": str(n)}
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "drills.cli", "--lang", "en", "run", "test_drill.py"),
            *("--registry", "registry.yaml", "--journal", url, "--vantage", vantage),
            *("--out", str(tmp / f"out{n}")),
        ],
        cwd=tmp,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def vantage_view_of(url: str) -> dict[str, object]:
    with open_journal(url, read_only=True) as journal:
        return vantage_view([journal])


def _check_whole(url: str) -> tuple[int, int]:
    """One read as the readers do it; (runs seen running, their deliveries so far)."""
    running = partial = 0
    with open_journal(url, read_only=True) as journal:
        runs = journal.runs(scenario="test_drill")
        for run in runs:
            got = len(journal.deliveries(run["run_id"]))
            assert got <= PER_RUN
            if run["status"] == RunStatus.FINISHED:
                assert got == PER_RUN, f"{run['vantage']} finished with {got}/{PER_RUN}"
            elif run["status"] == RunStatus.RUNNING:
                running += 1
                partial += got
            else:
                raise AssertionError(f"{run['vantage']}: {run['status']}")
        finished = {r["vantage"] for r in runs if r["status"] == RunStatus.FINISHED}
        for scenario in vantage_view([journal], scenario="test_drill")["scenarios"]:
            for muni in scenario["municipalities"]:
                for channel in muni["channels"]:
                    for vantage in finished:
                        assert channel["by_vantage"][vantage]["sent"] == 1
        # What a scrape of ``serve`` shows at this moment: never more than a run sent,
        # and all of it for a vantage whose run has ended.
        counted = delivered_by_vantage(exposition(journal).decode())
        assert all(n <= PER_RUN for n in counted.values()), counted
        assert all(counted[vantage] == PER_RUN for vantage in finished), counted
    return running, partial


def delivered_by_vantage(text: str) -> Counter[str]:
    """``tsunagari_deliveries_total`` of an exposition, summed per vantage."""
    delivered = Counter[str]()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "tsunagari_deliveries_total":
                assert sample.labels["outcome"] == "delivered", sample
                delivered[sample.labels["vantage"]] += int(sample.value)
    return delivered


def test_three_vantage_runners_write_at_once_and_one_view_shows_all(tmp_path, pg_url):
    (tmp_path / "registry.yaml").write_text(REGISTRY, encoding="utf-8")
    (tmp_path / "test_drill.py").write_text(SCENARIO, encoding="utf-8")
    (tmp_path / "barrier").mkdir()
    runners = [_runner(tmp_path, pg_url, v, n) for n, v in enumerate(VANTAGES)]
    reads = seen_running = seen_partial = 0
    try:
        while any(r.poll() is None for r in runners):
            running, partial = _check_whole(pg_url)
            reads += 1
            seen_running = max(seen_running, running)
            seen_partial = max(seen_partial, partial)
            time.sleep(0.05)  # a reader's pace, not a margin: each read checks itself
        results = [r.communicate(timeout=60) for r in runners]
    finally:
        for r in runners:
            if r.poll() is None:
                r.kill()
                r.communicate()
    for runner, (out, err) in zip(runners, results, strict=True):
        assert runner.returncode == 0, out + err
        assert_no_traceback(out + err)
    _check_whole(pg_url)
    assert reads > 0 and seen_running >= 1 and seen_partial >= 1, (reads, seen_running)

    with open_journal(pg_url, read_only=True) as journal:
        runs = journal.runs()
        assert sorted(r["vantage"] for r in runs) == sorted(VANTAGES)
        assert {r["status"] for r in runs} == {RunStatus.FINISHED}
        # All three were open at once: the last to start started before the first ended.
        assert max(r["started_at"] for r in runs) < min(r["finished_at"] for r in runs)
        (scenario,) = vantage_view([journal])["scenarios"]
        assert scenario["vantages"] == sorted(VANTAGES)
        assert [m["code"] for m in scenario["municipalities"]] == sorted(MUNIS)
        for muni in scenario["municipalities"]:
            assert sorted(c["id"] for c in muni["channels"]) == sorted(CHANNELS)
            for channel in muni["channels"]:
                assert set(channel["by_vantage"]) == set(VANTAGES)
                for cell in channel["by_vantage"].values():
                    assert cell["sent"] == cell["reached"] == 1
        text = exposition(journal).decode()
        last = max(runs, key=lambda r: r["finished_at"])["vantage"]
    # The last runner to end wrote its vantages.json after the other two had ended: the
    # same combined view, from a runner's own output folder.
    written = json.loads((tmp_path / f"out{VANTAGES.index(last)}" / "vantages.json").read_text())
    assert written == vantage_view_of(pg_url)
    assert written["scenarios"][0]["vantages"] == sorted(VANTAGES)
    # one scrape, all three vantages
    assert delivered_by_vantage(text) == dict.fromkeys(VANTAGES, PER_RUN)


HOLD = """\
import os, time
from pathlib import Path

def test_hold(drill):
    here = Path(os.environ["TSG_BARRIER"])
    (here / "holding").touch()
    deadline = time.monotonic() + 30
    while not (here / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.02)  # until the test has tried the other runners
    drill.broadcast("参集してください", timeout=5)
"""

QUICK = """\
def test_quick(drill):
    drill.broadcast("参集してください", timeout=5)
"""


def test_the_run_lock_is_per_vantage_across_processes(tmp_path, pg_url):
    """A second runner of the same vantage exits 4 naming the holder; another vantage runs."""
    (tmp_path / "registry.yaml").write_text(REGISTRY, encoding="utf-8")
    # The same scenario (its name is the file's), once holding on, once quick.
    for folder, text in (("hold", HOLD), ("quick", QUICK)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "test_lock.py").write_text(text, encoding="utf-8")
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", "TSG_BARRIER": str(barrier)}
    env.pop("PYTEST_ADDOPTS", None)

    def run(scenario: str, vantage: str, n: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [
                *(sys.executable, "-m", "drills.cli", "--lang", "en", "run", scenario),
                *("--registry", "registry.yaml", "--journal", pg_url, "--vantage", vantage),
                *("--out", str(tmp_path / f"out{n}")),
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    holder = run("hold/test_lock.py", "LGWAN", 0)
    try:
        deadline = time.monotonic() + 60
        while not (barrier / "holding").exists():
            assert holder.poll() is None, holder.communicate()
            assert time.monotonic() < deadline, "the first runner never started its drill"
            time.sleep(0.02)
        same, other = (
            run("quick/test_lock.py", "LGWAN", 1),
            run("quick/test_lock.py", "テレワーク", 2),
        )
        same_out, same_err = same.communicate(timeout=60)
        other_out, other_err = other.communicate(timeout=60)
        (barrier / "go").touch()
        hold_out, hold_err = holder.communicate(timeout=60)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.communicate()
    assert same.returncode == 4, same_out + same_err
    assert "in progress" in same_err and "LGWAN" in same_err
    assert other.returncode == 0, other_out + other_err
    assert holder.returncode == 0, hold_out + hold_err
    with open_journal(pg_url, read_only=True) as journal:
        runs = journal.runs()
        assert sorted((r["scenario"], r["vantage"]) for r in runs) == [
            ("test_lock", "LGWAN"),
            ("test_lock", "テレワーク"),
        ]
