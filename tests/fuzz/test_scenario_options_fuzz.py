"""Fuzzing the drill options (``drills.operator.options``) and the scenario markers
(``drills.operator.markers``), through their parse functions directly.

Property: every value gives a setting or a :class:`SettingsError` (options), a
:class:`ScenarioMeta` or a :class:`ScenarioMistake` (markers) with a message in both
languages — never another exception.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from drills.core.requirements import ScenarioMistake
from drills.operator.markers import DISASTERS, ScenarioMeta, disaster_of, read_meta
from drills.operator.options import OPTIONS, OPTIONS_BY_NAME, Option, SettingsError
from drills.operator.session import DrillSettings

EXAMPLES = settings().max_examples  # 100 by default, 2,000 at night (conftest.py)
BASE = Path("/srv/drills")

_text = st.one_of(
    st.text(max_size=80),
    st.sampled_from(["", " ", "ja", "en", "JA", "default", "LGWAN", "a/b", "x" * 65, "\x00",
                     "http://", "https://gw:9091", "ftp://x", "-1", "0", "1" * 5000, "1e400",
                     "~", "~/j.sqlite", "~nobody-here/x", "/", ".", "..", "\ud800"]),
)  # fmt: skip


def raw_for(option: Option) -> st.SearchStrategy[Any]:
    """Values of the shapes pytest hands over (argparse ``store_true``/``append``, ini
    ``bool``/``args``/``string``); the values themselves are anything."""
    if option.kind == "flag":
        return st.one_of(st.none(), st.booleans())
    if option.kind == "list":
        return st.one_of(st.none(), st.lists(_text, max_size=5))
    return st.one_of(st.none(), _text)


@given(st.sampled_from(OPTIONS).flatmap(lambda o: st.tuples(st.just(o), raw_for(o))))
@settings(max_examples=EXAMPLES * 3)
@example((OPTIONS_BY_NAME["registry"], "~0"))  # found at night: Path.expanduser RuntimeError
def test_each_option_parses_or_says_why(option_and_raw):
    option, raw = option_and_raw
    try:
        value = option.parse(raw, BASE)
    except SettingsError as exc:
        message = str(exc)
        assert option.flag in message and " / " in message  # 日本語 / English
        event(f"{option.name}: refused")
        return
    event(f"{option.name}: accepted")
    if option.kind == "flag":
        assert isinstance(value, bool)
    elif option.kind == "list":
        assert isinstance(value, tuple) and all(isinstance(v, str) and v for v in value)
    elif option.kind == "path" and isinstance(value, str):  # a journal in PostgreSQL
        assert option.url_ok and value.startswith(("postgresql://", "postgres://"))
    elif option.kind == "path":
        assert value is None or (isinstance(value, Path) and value.is_absolute())
    # a value that was accepted goes back to the command line it came from
    assert isinstance(option.to_args(value), list)


@given(st.fixed_dictionaries({}, optional={o.name: raw_for(o) for o in OPTIONS}))
@settings(max_examples=EXAMPLES)
def test_drill_settings_build_or_say_why(raw):
    try:
        built = DrillSettings.build(raw, BASE)
    except SettingsError:
        return
    journal = built.journal
    assert built.lang in ("ja", "en")
    assert journal.startswith("postgres") if isinstance(journal, str) else journal.is_absolute()


# -------------------------------------------------------------------------- markers


@dataclass
class FakeMarker:
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class FakeNode:
    """What ``read_meta`` asks of a pytest Module node: its closest markers."""

    markers: dict[str, FakeMarker]

    def get_closest_marker(self, name: str) -> FakeMarker | None:
        return self.markers.get(name)


_arg = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([10**400, 0, 1, 5, 6, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([*DISASTERS, *DISASTERS.values(), "60s", "0s", "2m", "500ms", "1e400",
                     "1" + "0" * 400, "nan", "inf", "soon", "", "  "]),
    st.text(max_size=30),
    st.lists(st.integers(), max_size=2),
)  # fmt: skip


@st.composite
def nodes(draw: st.DrawFn) -> FakeNode:
    markers = {}
    for name in draw(st.sets(st.sampled_from(["scenario", "disaster", "severity", "deadline"]))):
        args = tuple(draw(st.lists(_arg, min_size=0, max_size=2)))
        kwargs = draw(st.dictionaries(st.sampled_from(["x", "within"]), _arg, max_size=1))
        markers[name] = FakeMarker(name, args, kwargs)
    return FakeNode(markers)


@given(nodes(), st.one_of(st.none(), st.text(max_size=40)), st.text(min_size=1, max_size=20))
@settings(max_examples=EXAMPLES * 3)
@example(FakeNode({"deadline": FakeMarker("deadline", (10**5000,))}), None, "x")
@example(FakeNode({"deadline": FakeMarker("deadline", (float("nan"),))}), None, "x")
@example(FakeNode({"severity": FakeMarker("severity", (10**5000,))}), None, "x")
@example(FakeNode({"disaster": FakeMarker("disaster", (10**5000,))}), None, "x")
@example(FakeNode({"scenario": FakeMarker("scenario", (1, 10**5000))}), None, "x")
def test_markers_give_meta_or_a_scenario_mistake(node, doc, default_name):
    try:
        meta = read_meta(node, doc, default_name)
    except ScenarioMistake as exc:
        assert exc.render("ja") and exc.render("en")
        event("refused")
        return
    event("accepted")
    assert isinstance(meta, ScenarioMeta) and meta.name
    assert meta.disaster is None or meta.disaster in DISASTERS
    assert meta.severity is None or 1 <= meta.severity <= 5
    assert meta.deadline_s is None or (math.isfinite(meta.deadline_s) and meta.deadline_s > 0)


@given(_arg)
@settings(max_examples=EXAMPLES)
@example(10**5000)
def test_disaster_of_any_value(value):
    try:
        assert disaster_of(value) in DISASTERS
    except ScenarioMistake as exc:
        assert "未知の災害種別" in exc.render("ja")
