"""The registry loader's limits: each finding of the first outside fuzzing round (issue 15).

Every bad file ends in a :class:`RegistryError` naming the file and line (exit 2
through the command line), never in another exception, a hang or gigabytes of
memory. The resource bounds are checked on a fresh ``tsunagari registry check``
process through ``os.wait4`` (its own peak RSS and CPU time, not the test's).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from drills.cli import main
from drills.core.errors import SHOWN_PROBLEMS, RegistryError
from drills.core.registry import MAX_REGISTRY_BYTES, load_registry, parse_registry
from drills.core.yamlfast import MAX_DEPTH, MAX_NODES
from probes.settings import MAX_DURATION_S, DurationError, parse_duration
from tests.support import run_tsunagari

ROOT = Path(__file__).resolve().parents[2]

CHANNEL = "{id: chat, kind: webhook, sim: {latency: 100ms}}"


def registry(body: str = "", *, defaults: str = "", channel: str = CHANNEL) -> str:
    return (
        (f"defaults: {defaults}\n" if defaults else "")
        + f'municipalities:\n  - code: "131211"\n    name: 足立区\n{body}'
        + f"    channels:\n      - {channel}\n"
    )


def refused(text: str, file: str = "reg.yaml") -> list:
    with pytest.raises(RegistryError) as info:
        parse_registry(text, file)
    return info.value.problems


def bomb(levels: int, width: int = 9) -> str:
    """A "billion laughs": each level a list of *width* aliases to the level before."""
    names = "abcdefghijklmnopqrstuvwxyz"
    out = [f'{names[0]}: &{names[0]} ["lol"]']
    for i in range(1, levels):
        refs = ",".join(f"*{names[i - 1]}" for _ in range(width))
        out.append(f"{names[i]}: &{names[i]} [{refs}]")
    return "\n".join(out) + "\n"


def check_in_process(path: Path, capsys, *extra: str) -> tuple[int, str]:
    code = main(["--lang", "en", "registry", "check", str(path), *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


# The child reports its own peak resident memory (VmHWM of its own address space).
# ``ru_maxrss`` from wait4 would not do: Linux carries the parent's high-water mark
# over fork and exec, so inside a big pytest process every child "peaks" at the
# size of pytest itself.
_PEAK_SCRIPT = """\
import re, sys
from drills.cli import main
try:
    code = main(sys.argv[1:])
finally:
    status = open("/proc/self/status").read()
    sys.stderr.write("\\nPEAK_KB=" + re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1) + "\\n")
sys.exit(code)
"""


def check_measured(path: Path) -> tuple[int, str, float, float]:
    """``tsunagari registry check PATH`` in a fresh process: (exit, stderr, CPU s, peak MB)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", _PEAK_SCRIPT, "--lang", "en", "registry", "check", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert proc.stderr is not None
    with proc.stderr:
        err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err, _, peak = err.rpartition("\nPEAK_KB=")
    return proc.returncode, err, usage.ru_utime + usage.ru_stime, int(peak) / 1024


# ----------------------------------------------------------------------- bytes and size


def test_non_utf8_bytes_name_file_line_and_byte(tmp_path, capsys):
    path = tmp_path / "reg.yaml"
    path.write_bytes(registry().encode() + b"# \xff\xfe note\n")
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    (problem,) = info.value.problems
    assert problem.file == str(path) and problem.line == 6
    assert "0xff" in problem.why_en and "UTF-8" in problem.why_ja
    code, out = check_in_process(path, capsys)
    assert code == 2 and f"{path}:6" in out and "Traceback" not in out


def test_lone_surrogate_in_text_is_a_problem():
    (problem,) = refused(registry() + "# \ud800\n")
    assert problem.line == 6 and "UTF-8" in problem.why_en


def test_file_over_the_size_limit_is_refused_saying_the_limit(tmp_path, capsys):
    path = tmp_path / "big.yaml"
    path.write_text(registry() + "#" * MAX_REGISTRY_BYTES, encoding="utf-8")
    code, out = check_in_process(path, capsys)
    assert code == 2 and "8 MiB = 8,388,608 bytes" in out and "Traceback" not in out
    (problem,) = refused("#" * (MAX_REGISTRY_BYTES + 1))
    assert "8,388,608" in problem.why_ja


def test_one_mebibyte_of_ones_is_refused_quickly_in_little_memory(tmp_path):
    """Was 10.9 s, 855 MB and 524,292 problems printed (issue 15)."""
    path = tmp_path / "ones.yaml"
    items = (MAX_REGISTRY_BYTES - len("municipalities: []")) // 2
    path.write_text("municipalities: [" + ",".join(["1"] * items) + "]", encoding="utf-8")
    assert path.stat().st_size <= MAX_REGISTRY_BYTES
    code, err, cpu_s, peak_mb = check_measured(path)
    assert code == 2 and "Traceback" not in err
    assert f"more than {MAX_NODES:,} nodes" in err and len(err.splitlines()) == 2
    # Measured here: ~1.0 s CPU and ~40 MB (interpreter included): bounds far below the old run.
    assert cpu_s < 5 and peak_mb < 150, (cpu_s, peak_mb)


# ------------------------------------------------------------------ aliases and nesting


def test_billion_laughs_is_refused_quickly_in_little_memory(tmp_path):
    """8 levels of 9 aliases in ~300 bytes: was past 2.3 GB (issue 15)."""
    path = tmp_path / "laughs.yaml"
    path.write_text(bomb(8), encoding="utf-8")
    assert path.stat().st_size < 400
    code, err, cpu_s, peak_mb = check_measured(path)
    assert code == 2 and "Traceback" not in err
    assert f"{path}:" in err and "aliases are expanded" in err
    assert cpu_s < 5 and peak_mb < 150, (cpu_s, peak_mb)


def test_thirteen_line_alias_bomb_in_a_registry():
    text = bomb(13, width=4) + registry()
    (problem,) = refused(text)
    assert problem.field == "(yaml)" and problem.line is not None and problem.line <= 13


def test_aliases_that_stay_small_are_fine():
    """The rule counts expanded nodes; sharing a block by alias is allowed."""
    text = textwrap.dedent(
        """\
        municipalities:
          - code: "131211"
            name: 足立区
            slo: &slo {latency: 30s}
            channels: [{id: chat, kind: webhook, sim: &fast {latency: 100ms}}]
          - code: "131016"
            name: 千代田区
            slo: *slo
            channels: [{id: chat, kind: webhook, sim: *fast}]
        """
    )
    reg = parse_registry(text)
    assert [m.channels[0].slo.latency for m in reg.municipalities] == [30.0, 30.0]


@pytest.mark.parametrize(
    "text",
    [
        "a: &x [*x]\n",
        "a: &x {b: *x}\n",
        "a: &x {<<: *x}\n",
        "defaults: &d\n  slo: {latency: *d}\n",
    ],
    ids=["list", "mapping", "merge-key", "in-defaults"],
)
def test_self_referencing_alias_is_a_problem(text):
    (problem,) = refused(text)
    assert "expand forever" in problem.why_en and problem.line in (1, 2)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 100_000])
def test_deep_flow_nesting_is_a_problem(depth):
    (problem,) = refused("a: " + "[" * depth + "]" * depth + "\n")
    assert problem.field == "(yaml)" and problem.line == 1


def test_deep_block_nesting_names_the_line():
    text = "\n".join("  " * i + f"k{i}:" for i in range(1000)) + " 1\n"
    (problem,) = refused(text)
    assert problem.line == MAX_DEPTH + 1 and f"{MAX_DEPTH}" in problem.why_en


def test_nesting_at_the_limit_is_only_a_schema_problem():
    inner = MAX_DEPTH - 3  # the municipalities list, its mapping and the top mapping
    deep = "[" * inner + "]" * inner
    found = refused(registry(f"    extra: {deep}\n"))
    assert [p.field for p in found] == ["municipalities[0].extra"]


def test_deep_registry_through_tsunagari_run_exits_2(tmp_path):
    """Was RecursionError → exit 3 through ``run`` (issue 15)."""
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "test_drill.py").write_text(
        'def test_x(drill):\n    drill.broadcast("参集", channels="chat")\n', encoding="utf-8"
    )
    (tmp_path / "registry.yaml").write_text(
        registry() + "extra: " + "[" * 995 + "]" * 995 + "\n", encoding="utf-8"
    )
    done = run_tsunagari(
        "run", "s", "--registry", "registry.yaml", "--journal", "j.sqlite", cwd=tmp_path,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "nested too deeply" in done.stderr and "Traceback" not in done.stdout + done.stderr


# --------------------------------------------------------------------- values and output


@pytest.mark.parametrize(
    "value",
    ["2001-02-30", "1" * 5000, "!!float abc", "!!int 0x"],
    ids=["bad-date", "5000-digit-int", "bad-float", "bad-hex"],
)
def test_values_yaml_cannot_build_are_problems_with_line(value):
    (problem,) = refused(registry(f"    note: {value}\n"))
    assert problem.line == 4 and problem.field == "(yaml)"


def test_problems_are_capped_with_a_count_of_the_rest(tmp_path, capsys):
    channels = "\n".join(f"      - {{id: c{i}, kind: nope}}" for i in range(120))
    path = tmp_path / "many.yaml"
    path.write_text(
        f'municipalities:\n  - code: "131211"\n    name: 足立区\n    channels:\n{channels}\n',
        encoding="utf-8",
    )
    code, out = check_in_process(path, capsys)
    assert code == 2 and "The registry has 120 problem(s)" in out
    assert out.count("unknown channel kind") == SHOWN_PROBLEMS
    assert f"… and {120 - SHOWN_PROBLEMS} more problem(s) (120 in all" in out
    code, out = check_in_process(path, capsys, "--lang", "ja")
    assert f"… ほか {120 - SHOWN_PROBLEMS} 件" in out


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (10**400, "too long"),
        ("1" + "0" * 400 + "s", "too long"),
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        (float("-inf"), "finite"),
        (-1, "negative"),
        (MAX_DURATION_S + 1, "too long"),
        ("1e3", "malformed"),
        (True, "number of seconds"),
    ],
)
def test_parse_duration_refuses_with_a_bilingual_reason(value, why):
    with pytest.raises(DurationError) as info:
        parse_duration(value)
    assert why in info.value.en and info.value.ja and len(str(info.value)) < 200


def test_parse_duration_limits_are_inclusive():
    assert parse_duration(0) == 0.0 and parse_duration("36500d") == MAX_DURATION_S


@pytest.mark.parametrize(
    ("text", "field", "why"),
    [
        (registry(defaults="{slo: {latency: .nan}}"), "defaults.slo.latency", "finite"),
        (registry(defaults="{slo: {latency: 0}}"), "defaults.slo.latency", "greater than 0"),
        (registry(defaults="{slo: {reachability: .nan}}"), "defaults.slo.reachability", ""),
        (registry(defaults="{slo: {reachability: .inf}}"), "defaults.slo.reachability", ""),
        (registry("    drill_interval: 0\n"), "municipalities[0].drill_interval", "greater"),
        (registry("    drill_interval: .inf\n"), "municipalities[0].drill_interval", "finite"),
        (
            registry(channel="{id: c, kind: webhook, sim: {latency: .nan}}"),
            "municipalities[0].channels[0].sim.latency.value",
            "finite",
        ),
        (
            registry(channel="{id: c, kind: webhook, sim: {latency: .inf}}"),
            "municipalities[0].channels[0].sim.latency.value",
            "finite",
        ),
        (
            registry(channel="{id: c, kind: webhook, sim: {rate_limit: .inf}}"),
            "municipalities[0].channels[0].sim.rate_limit",
            "finite",
        ),
        (
            registry(channel="{id: c, kind: webhook, sim: {latency: 100ms}, slo: {latency: 0s}}"),
            "municipalities[0].channels[0].slo.latency",
            "greater than 0",
        ),
    ],
)
def test_meaningless_numbers_are_refused(text, field, why):
    found = refused(text)
    assert [p.field for p in found] == [field]
    assert why in found[0].why_en and found[0].why_ja != found[0].why_en


def test_zero_sim_latency_is_allowed():
    reg = parse_registry(registry(channel="{id: c, kind: webhook, sim: {latency: 0}}"))
    assert reg.municipalities[0].channels[0].sim.latency.value == 0.0


def test_secret_file_that_is_not_utf8_is_a_problem(tmp_path):
    secret = tmp_path / "pw"
    secret.write_bytes(b"\xff\xfe")
    text = registry(
        channel=f"{{id: c, kind: webhook, url: 'https://x.example/h', auth: 'file:{secret}'}}"
    )
    (problem,) = refused(text)
    assert "not UTF-8" in problem.why_en and problem.field.endswith(".auth")


# ---------------------------------------------------------------------------- marker


@pytest.mark.parametrize(
    "marker", ["【訓練】", "[DRILL]", "drill:", "＜訓練・Drill＞", "【防災訓練】"]
)
def test_drill_markers_accepted(marker):
    assert parse_registry(registry(defaults=f"{{marker: '{marker}'}}")).marker == marker


@pytest.mark.parametrize(
    ("marker", "why"),
    [
        ("", "訓練 or DRILL"),
        ("【緊急】", "訓練 or DRILL"),
        ("[TEST]", "訓練 or DRILL"),
        ("【訓練】" + "x" * 40, "at most 32"),
        ("訓練\\n避難してください", "one line"),
    ],
)
def test_markers_that_could_pass_for_real_alerts_are_refused(marker, why):
    (problem,) = refused(registry(defaults=f'{{marker: "{marker}"}}'))
    assert problem.field == "defaults.marker" and why in problem.why_en
    assert "訓練" in problem.why_ja and problem.why_ja != problem.why_en


def test_demo_registry_and_its_marker_pass():
    from drills.operator.demo import demo_registry_path

    assert "訓練" in load_registry(demo_registry_path()).marker


# ------------------------------------------------------------------- timing sanity


def test_a_realistic_registry_near_the_size_limit_loads_in_seconds():
    """~1,700 municipalities with 3 channels each (all of Japan fits in 1 MiB)."""
    from drills.core.registry import check_digit_ok

    codes = [c for c in (f"{n:05d}" + str(d) for n in range(10000, 99999) for d in range(10))
             if check_digit_ok(c)][:1700]  # fmt: skip
    rows = [
        f'  - {{code: "{c}", name: 団体{i}, tags: [t{i % 7}], channels: ['
        f"{{id: chat, kind: webhook, sim: {{latency: 300ms}}}}, "
        f"{{id: mail, kind: webhook, sim: {{latency: 400ms}}}}, "
        f"{{id: sms, kind: webhook, sim: {{latency: 800ms}}}}]}}"
        for i, c in enumerate(codes)
    ]
    text = "municipalities:\n" + "\n".join(rows) + "\n"
    assert len(text.encode()) < MAX_REGISTRY_BYTES
    started = time.process_time()
    reg = parse_registry(text)
    assert len(reg.municipalities) == 1700
    assert time.process_time() - started < 10


# ------------------------------------------- --municipality selects before secrets (#19)

SPLIT = """\
municipalities:
  - {code: "131211", name: 足立区, channels: [{id: chat, kind: webhook, sim: {latency: 50ms}}]}
  - code: "131016"
    name: 千代田区
    channels:
      - {id: chat, kind: webhook, url: "http://127.0.0.1:9/hook", auth: "env:TSG_UNSET_CHIYODA"}
"""


def tsunagari(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_tsunagari(*args, cwd=cwd, unset=["TSG_UNSET_CHIYODA"], timeout=120)


def test_selection_checks_only_the_selected_secrets_in_process(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TSG_UNSET_CHIYODA", raising=False)
    path = tmp_path / "registry.yaml"
    path.write_text(SPLIT, encoding="utf-8")
    reg = load_registry(path, check_secrets=False)  # structure: every municipality
    assert reg.secret_problems(reg.targets(["131211"])) == []
    (problem,) = reg.secret_problems(reg.targets(["千代田区"]))
    assert problem.line == 6 and problem.field == "municipalities[1].channels[0].auth"
    assert "TSG_UNSET_CHIYODA" in problem.why_en
    code, out = check_in_process(path, capsys, "--municipality", "131211")
    assert code == 0, out
    code, out = check_in_process(path, capsys)
    assert code == 2 and "TSG_UNSET_CHIYODA" in out
    code, out = check_in_process(path, capsys, "--municipality", "足立")
    assert code == 2 and "'足立'" in out and "Traceback" not in out


def test_selection_still_validates_every_municipality_structurally(tmp_path, capsys):
    path = tmp_path / "registry.yaml"
    path.write_text(SPLIT.replace("auth: ", "auth_typo: "), encoding="utf-8")
    code, out = check_in_process(path, capsys, "--municipality", "131211")
    assert code == 2 and "municipalities[1].channels[0].auth_typo" in out


def test_run_with_municipality_does_not_need_other_municipalities_secrets(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "test_drill.py").write_text(
        "def test_chat(drill):\n"
        '    drill.broadcast("参集してください", channels="chat").expect(reached="100%", within="2s")\n',
        encoding="utf-8",
    )
    (tmp_path / "registry.yaml").write_text(SPLIT, encoding="utf-8")
    common = ("run", "s", "--registry", "registry.yaml", "--journal", "j.sqlite")
    done = tsunagari(*common, "--municipality", "131211", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    done = tsunagari(*common, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "TSG_UNSET_CHIYODA" in done.stderr and "Traceback" not in done.stdout + done.stderr
