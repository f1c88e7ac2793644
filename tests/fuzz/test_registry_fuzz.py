"""Fuzzing the registry loader: structure-aware mutants of the demo registry, raw bytes,
YAML token soup, alias bombs, deep nesting and huge files.

Property: :func:`load_registry` / :func:`parse_registry` either return a Registry or
raise :class:`RegistryError` whose problems name the file and say why in both
languages — nothing else, in bounded time and memory.
"""

from __future__ import annotations

import copy
import math
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from drills.core.errors import RegistryError
from drills.core.registry import MAX_REGISTRY_BYTES, Registry, load_registry, parse_registry
from tests.registry_builders import demo_mutants, demo_text

EXAMPLES = settings().max_examples  # 100 by default, 2,000 at night (conftest.py)
FILE = "fuzz.yaml"
DEMO_TEXT = demo_text()
DEMO = yaml.safe_load(DEMO_TEXT)


def judged(text: str) -> Registry | RegistryError:
    """The loader's answer; anything but a Registry or a well-formed RegistryError fails."""
    try:
        return parse_registry(text, FILE, check_secrets=False)
    except RegistryError as exc:
        assert exc.problems, "a RegistryError must list its problems"
        for p in exc.problems:
            assert p.file == FILE and p.why_ja and p.why_en and p.field
            assert p.line is None or p.line >= 1
        assert exc.render("en") and exc.render("ja")
        return exc


# ------------------------------------------------------------ structure-aware mutants


def _demo_with(municipality: int, channel: int, **changes: Any) -> Any:
    data = copy.deepcopy(DEMO)
    data["municipalities"][municipality]["channels"][channel].update(changes)
    return data


@given(demo_mutants())
@settings(max_examples=EXAMPLES * 4)
@example(_demo_with(0, 1, to=1))  # found at night: the mail simulator's hook raised TypeError
def test_structure_aware_mutants_of_the_demo_registry(data):
    text = yaml.dump(data, Dumper=yaml.CSafeDumper, allow_unicode=True, sort_keys=False)
    answer = judged(text)
    event("accepted" if isinstance(answer, Registry) else "refused")


@given(demo_mutants(), st.sampled_from(["flow", "block"]))
@settings(max_examples=EXAMPLES // 2)
def test_mutants_that_load_are_sane(data, style):
    text = yaml.dump(
        data, Dumper=yaml.CSafeDumper, allow_unicode=True, default_flow_style=style == "flow"
    )
    reg = judged(text)
    if isinstance(reg, Registry):  # what the loader accepts, the harness can use
        assert "訓練" in reg.marker or "drill" in reg.marker.casefold()
        for m in reg.municipalities:
            for c in m.channels:
                assert math.isfinite(c.slo.latency) and c.slo.latency > 0
                assert 0 < c.slo.reachability <= 1
                if c.sim is not None:
                    assert math.isfinite(c.sim.latency.mean())


# --------------------------------------------------------------- text and raw bytes

_TOKENS = [
    "\n", "  ", "- ", ": ", "[", "]", "{", "}", ",", "&a ", "*a", "&b ", "*b", "<<: ", "? ",
    "!!str ", "!!int ", "!!float ", "!!binary ", "!!python/object ", "!!timestamp ", "---\n",
    "...\n", "|\n  ", ">\n  ", "'", '"', "#", "%YAML 1.1\n", "municipalities:", "channels:",
    "code: \"131211\"", "name: x", "kind: webhook", "id: c", "sim:", "latency:", ".nan", ".inf",
    "1e400", "2001-02-30", "0x", "1" * 30, "\t", "\ufeff", "\x00", "\x85", "\u2028", "訓練",
]  # fmt: skip


@given(st.lists(st.sampled_from(_TOKENS) | st.text(max_size=5), max_size=60).map("".join))
@settings(max_examples=EXAMPLES * 2)
@example("a: &x [*x]\n")
@example("a: &x {<<: *x}\n")
@example("[" * 1000 + "]" * 1000)
def test_yaml_token_soup(text):
    judged(text)


@given(st.binary(max_size=2000))
@settings(max_examples=EXAMPLES)
@example(b"\xff\xfe")
@example(DEMO_TEXT.encode() + b"\x80")
def test_raw_bytes_from_a_file(raw):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / FILE
        path.write_bytes(raw)
        try:
            load_registry(path, check_secrets=False)
        except RegistryError as exc:
            assert all(p.file == str(path) for p in exc.problems)


@given(st.data())
@settings(max_examples=EXAMPLES)
def test_demo_text_with_bytes_flipped(data):
    raw = bytearray(DEMO_TEXT.encode())
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    text = raw.decode("utf-8", errors="surrogateescape")
    judged(text)


# ------------------------------------------------------- bombs, depth and huge inputs


@given(
    levels=st.integers(2, 14),
    width=st.integers(2, 12),
    container=st.sampled_from(["list", "map", "merge"]),
    self_ref=st.booleans(),
)
@settings(max_examples=EXAMPLES // 2)
def test_alias_bombs_are_refused_in_bounded_time_and_memory(levels, width, container, self_ref):
    lines = ['l0: &l0 ["lol"]']
    for i in range(1, levels):
        if container == "list":
            body = "[" + ",".join([f"*l{i - 1}"] * width) + "]"
        elif container == "map":
            body = "{" + ",".join(f"k{j}: *l{i - 1}" for j in range(width)) + "}"
        else:
            body = "{" + ",".join(f"k{j}: *l{i - 1}" for j in range(width)) + f", <<: *l{i - 1}}}"
        lines.append(f"l{i}: &l{i} {body}")
    if self_ref:
        lines.append(f"l{levels - 1}x: &z [*l{levels - 1}, *z]")
    text = "\n".join(lines) + "\n"
    tracemalloc.start()
    started = time.process_time()
    try:
        judged(text)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert time.process_time() - started < 5
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB"


@given(
    depth=st.integers(1, 5000),
    opener=st.sampled_from(["[", "{a: ", "- ", "k: "]),
)
@settings(max_examples=EXAMPLES // 2)
def test_deep_nesting(depth, opener):
    if opener == "[":
        text = "[" * depth + "]" * depth
    elif opener == "{a: ":
        text = "{a: " * depth + "1" + "}" * depth
    elif opener == "- ":
        text = "".join("  " * i + "-\n" for i in range(depth)) + "  " * depth + "1\n"
    else:
        text = "".join("  " * i + f"k{i}:\n" for i in range(depth)) + "  " * depth + "1\n"
    judged(text)


@given(
    unit=st.sampled_from(["1,", "[1],", "{a: 1},", '"訓練",', "&x 1, *x,", "a,"]),
    size=st.sampled_from([MAX_REGISTRY_BYTES // 8, MAX_REGISTRY_BYTES - 64, MAX_REGISTRY_BYTES + 1]),
)  # fmt: skip
@settings(max_examples=max(3, EXAMPLES // 30))
def test_huge_inputs(unit, size):
    body = unit * (size // len(unit.encode()))
    text = "municipalities: [" + body + "]"
    started = time.process_time()
    judged(text)  # memory: tests/core/test_registry_limits.py measures a fresh process's RSS
    assert time.process_time() - started < 10


@pytest.mark.parametrize("levels", [8, 10])
def test_the_issue_alias_bomb_costs_little(levels):
    """The 8-level 386-byte file of issue 15 (and a bigger one), measured directly."""
    text = "".join(
        f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}" if i else '"lol"'] * 9) + "]\n"
        for i in range(levels)
    )
    tracemalloc.start()
    try:
        with pytest.raises(RegistryError, match="aliases are expanded"):
            parse_registry(text, FILE)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20
