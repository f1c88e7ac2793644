"""A national drill's registry: 10,000 channels load within the limits, read in one pass.

The one-pass reader (:func:`drills.core.yamlfast.one_pass`) must build exactly what
the full loader builds, lines included, or hand the text back to it; a check stops
after :data:`MAX_PROBLEMS`; each secret file is read once.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from drills.core import yamlfast, yamlpos
from drills.core.errors import RegistryError
from drills.core.registry import MAX_PROBLEMS, MAX_REGISTRY_BYTES, load_registry, parse_registry
from drills.core.yamlfast import Built, one_pass
from drills.core.yamlpos import LineMap, read_yaml
from probes import settings as secret_settings
from tests.registry_builders import yaml_trees

ROOT = Path(__file__).resolve().parents[2]


def bench_module() -> ModuleType:
    """benchmarks/bench_registry_load.py, whose generator is bench_core_fanout's registry."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(
        "bench_registry_load", ROOT / "benchmarks" / "bench_registry_load.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def national(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bench_module().write_registry(10_000, tmp_path_factory.mktemp("national"))  # type: ignore[no-any-return]


def test_ten_thousand_channels_load_within_the_limit_each_secret_read_once(national, monkeypatch):
    reads: list[str] = []
    real = secret_settings._read_file

    def counted(path: str) -> Any:
        reads.append(path)
        return real(path)

    monkeypatch.setattr(secret_settings, "_read_file", counted)
    monkeypatch.setattr(secret_settings, "_FILES", {})
    text = national.read_text("utf-8")
    assert 2_000_000 < len(text.encode()) <= MAX_REGISTRY_BYTES
    reg = load_registry(national)
    targets = reg.targets()
    assert len(targets) == 10_000 and len(reg.municipalities) == 1_000
    assert reg.secret_problems() == []  # checked again: stat only, nothing read twice
    assert len(reads) == len(set(reads)) == 20_000
    # each channel knows its line without the line map of the whole file
    lines = text.splitlines()
    for t in targets[::997]:
        assert f"{{id: {t.channel.id}, " in lines[t.channel.line - 1]
    # a secret file gone since: the problem names its file, line and field
    gone = targets[4321].channel.settings.observer.auth  # type: ignore[attr-defined]
    Path(gone.target).unlink()
    (problem,) = reg.secret_problems()
    assert problem.file == str(national) and problem.field.endswith("observer.auth")
    assert "{id: c4321, " in lines[problem.line - 1]
    assert gone.target in problem.why_en and gone.target in problem.why_ja


def test_the_benchmarks_registry_is_read_in_one_pass(tmp_path):
    text = bench_module().write_registry(1_000, tmp_path).read_text("utf-8")
    loaded = one_pass(text, "r.yaml")
    assert isinstance(loaded, Built) and not loaded.angled
    assert loaded.data == yaml.load(text, Loader=yaml.CSafeLoader)
    assert read_yaml(text, "r.yaml").lines.lines == lines_of(text)


# ------------------------------------------------------- the same data and lines, or none

_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(["300ms", "0.99", "131211", "on", "~", "2001-02-03", "<<x.y>>", "a: b",
                     "- x", "#c", "'q'", '"q"', "yes", "0x1f", "1_000", ".inf", "訓練"]),
)  # fmt: skip
_tree = yaml_trees(_scalar, key_size=6, max_leaves=25)


def lines_of(text: str) -> dict[Any, int]:
    """The lines the full loader maps from the composed nodes."""
    loaded = yamlpos.read_in_full(text, "r.yaml")
    assert loaded.problems == []
    return loaded.lines.lines


@settings(max_examples=150, deadline=None)
@given(tree=_tree, flow=st.sampled_from([True, False, None]), width=st.sampled_from([20, 80]))
def test_one_pass_builds_what_the_full_loader_builds(tree, flow, width):
    text = yaml.safe_dump(tree, default_flow_style=flow, width=width, allow_unicode=True)
    assert isinstance(one_pass(text, "r.yaml"), Built), text  # nothing out of the ordinary
    loaded = read_yaml(text, "r.yaml")
    assert loaded.data == yaml.load(text, Loader=yaml.CSafeLoader)
    assert loaded.lines.lines == lines_of(text)
    assert loaded.angled == ("<<" in text)


def test_the_shipped_registries_read_the_same_both_ways():
    for path in (ROOT / "drills" / "data").rglob("*.yaml"):
        text = path.read_text("utf-8")
        loaded = one_pass(text, str(path))
        assert isinstance(loaded, Built), path
        assert loaded.data == yaml.load(text, Loader=yaml.CSafeLoader), path
        assert LineMap.later(text).lines == lines_of(text), path


@pytest.mark.parametrize(
    "text",
    [
        "a: &x 1\nb: *x\n",  # anchors and aliases: the limits count their expansion
        "a: !!str 1\n",  # a tag
        "a: 1\na: 2\n",  # a duplicate key: a problem with both lines
        "a: {b: 1}\nc: {<<: {b: 2}}\n",  # a merge key
        "? [a]\n: 1\n",  # a key that is not a scalar
        "a: 1\n---\nb: 2\n",  # two documents
        "a: [1\n",  # a syntax error
        "a: 2001-02-30\n",  # a value YAML cannot build
        "a: =\n",  # nor this
    ],
)
def test_anything_unusual_goes_to_the_full_loader(text):
    assert one_pass(text, "r.yaml") is None
    with pytest.raises(RegistryError):  # with the full loader's problems
        parse_registry(text, "r.yaml")


def test_too_deep_is_judged_in_the_one_pass():
    text = "[" * (yamlfast.MAX_DEPTH + 1) + "]" * (yamlfast.MAX_DEPTH + 1)
    assert one_pass(text, "r.yaml") == yamlfast.limit_problem(text, "r.yaml")
    loaded = read_yaml(text, "r.yaml")
    assert loaded.data is None and loaded.problems == [yamlfast.too_deep("r.yaml", 1)]


def test_the_node_limit_is_the_limit_pass(monkeypatch):
    monkeypatch.setattr(yamlfast, "MAX_NODES", 1000)
    text = "municipalities:\n" + "".join(f"  - [{i}, x]\n" for i in range(400))
    loaded = read_yaml(text, "r.yaml")
    assert loaded.data is None
    assert loaded.problems == [yamlfast.limit_problem(text, "r.yaml")]
    (problem,) = loaded.problems
    assert problem.line == 334 and "1,000 nodes" in problem.why_en and "1,000 個" in problem.why_ja


# ------------------------------------------------------------------ a bounded check


def test_a_check_stops_after_max_problems_and_says_so():
    channels = "".join(f"      - {{id: c{i}, kind: nope}}\n" for i in range(MAX_PROBLEMS + 500))
    text = f'municipalities:\n  - code: "131211"\n    name: 足立区\n    channels:\n{channels}'
    with pytest.raises(RegistryError) as info:
        parse_registry(text, "r.yaml")
    first, *rest = info.value.problems
    assert len(rest) == MAX_PROBLEMS
    assert first.file == "r.yaml" and f"{MAX_PROBLEMS:,} problems" in first.why_en
    assert f"{MAX_PROBLEMS:,} 件" in first.why_ja
    assert [p.line for p in rest] == list(range(5, 5 + MAX_PROBLEMS))  # the first ones, in order


def test_300_000_wrong_municipalities_cost_max_problems():
    text = "municipalities: [" + '"訓練",' * 300_000 + "]"
    with pytest.raises(RegistryError) as info:
        parse_registry(text, "r.yaml")
    problems = info.value.problems
    assert len(problems) == MAX_PROBLEMS + 1
    assert all(p.field.startswith("municipalities[") for p in problems[1:])
    assert re.search(r"valid dictionary", problems[1].why_en)
