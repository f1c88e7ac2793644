"""The registry's two YAML readers agree: the one-pass reader changes nothing but the cost.

:func:`parse_registry` reads with :func:`drills.core.yamlpos.read_yaml`: one pass
(:func:`drills.core.yamlfast.one_pass`), and the full loader on anything unusual. Here the
same mutant of the demo registry is parsed with the one pass and with the one pass
turned off (the limit pass, then the full loader alone): both must give the same registry — every
municipality and channel with its settings, SLO, simulator knobs and line, and the
registry's line map — or the same problems (file, line, field, Japanese and English
text), in the same order.
"""

from __future__ import annotations

from typing import Any
from unittest import mock

import yaml
from hypothesis import event, given, settings
from hypothesis import strategies as st

from drills.core import yamlfast, yamlpos
from drills.core.errors import RegistryError
from drills.core.registry import Channel, parse_registry
from drills.core.yamlfast import Built
from tests.registry_builders import demo_line_edits, demo_mutants, demo_text

EXAMPLES = settings().max_examples  # 100 by default, 2,000 at night (conftest.py)
FILE = "mutant.yaml"


def outcome(text: str) -> tuple[Any, ...]:
    """What :func:`parse_registry` makes of *text*, in a form two answers compare by:
    reprs, so that a NaN read twice is equal to itself."""
    try:
        reg = parse_registry(text, FILE)
    except RegistryError as exc:
        return ("refused", [(p.file, p.line, p.field, p.why_ja, p.why_en) for p in exc.problems])
    municipalities = [
        (m.code, m.name, m.name_en, m.tags, m.drill_interval_s, [_seen(c) for c in m.channels])
        for m in reg.municipalities
    ]
    return ("accepted", reg.path, repr(reg.defaults), municipalities, reg.lines.lines)


def _seen(c: Channel) -> tuple[Any, ...]:
    what = (c.settings, c.raw_settings, c.slo, c.sim, c.surge)
    return (c.id, c.kind, c.label, c.line, *map(repr, what))


def one_pass_builds(text: str) -> bool:
    return isinstance(yamlfast.one_pass(text, FILE), Built)


def both_ways(text: str) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """*text*'s outcome with the one-pass reader, and with the full loader alone (after
    the limits judged from the first event)."""
    fast = outcome(text)
    with mock.patch.object(yamlpos, "one_pass", yamlfast.limit_problem):
        full = outcome(text)
    return fast, full


def test_the_demo_registry_itself_reads_the_same_both_ways():
    text = demo_text()
    assert one_pass_builds(text)  # the one-pass reader does read it
    fast, full = both_ways(text)
    assert fast[0] == "accepted" and fast == full


@given(demo_mutants(), st.sampled_from([None, True, False]))
@settings(max_examples=EXAMPLES)
def test_structure_aware_mutants_read_the_same_both_ways(data, flow):
    text = yaml.dump(
        data, Dumper=yaml.CSafeDumper, allow_unicode=True, sort_keys=False, default_flow_style=flow
    )
    assert one_pass_builds(text)  # a dumper writes nothing out of the ordinary
    fast, full = both_ways(text)
    event(fast[0])
    assert fast == full


@given(demo_line_edits())
@settings(max_examples=EXAMPLES * 2)
def test_line_edits_read_the_same_both_ways(text):
    event("one pass" if one_pass_builds(text) else "full loader")
    fast, full = both_ways(text)
    event(fast[0])
    assert fast == full
