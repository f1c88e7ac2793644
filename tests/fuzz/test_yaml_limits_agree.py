"""The one pass judges the YAML limits as the limit pass alone does, where it hands over too.

:func:`drills.core.yamlfast.one_pass` builds while the text is ordinary and, at the first
anchor, alias, tag, duplicate key or limit, goes on counting from that event with what it
has counted so far. :func:`~drills.core.yamlfast.limit_problem` counts from the first
event. With the limits lowered so that the demo registry (398 nodes, 7 deep) can break
them anywhere, both must name the same problem — too many nodes, too deep, a recursive
alias, at the same line — or both none; and what the one pass builds is what PyYAML builds.
"""

from __future__ import annotations

from unittest import mock

import yaml
from hypothesis import event, given, settings
from hypothesis import strategies as st

from drills.core import yamlfast
from drills.core.problem import Problem
from drills.core.yamlfast import Built, limit_problem, one_pass
from tests.registry_builders import demo_line_edits, demo_text

EXAMPLES = settings().max_examples  # 100 by default, 2,000 at night (conftest.py)
FILE = "limits.yaml"

# What may follow an ordinary part: aliases that multiply, one inside its own anchor, nesting.
_TAILS = [
    "",
    "z: &a [x, y, z]\n",
    "z: &a [x, y, z]\nw: [*a, *a, *a, *a]\n",
    "z: &a [1, 2, 3, 4]\ny: &b [*a, *a, *a, *a]\nw: [*b, *b, *b, *b]\n",
    "z: &r [1, *r]\n",
    "z: &s {k: *s}\n",
    "z: [[[[[[[[[1]]]]]]]]]\n",
    "z: !!str 1\nw: [[[[[[[[2]]]]]]]]\n",
    "z: 1\nz: [[[[[[[[2]]]]]]]]\n",
    "z: &a [[[[1]]]]\nw: [*a, [[[[[[2]]]]]]]\n",
    "z: *nowhere\n",
    "---\nz: [[[[[[[[1]]]]]]]]\n",
]


@given(
    text=st.one_of(demo_line_edits(), st.just(demo_text())),
    tail=st.sampled_from(_TAILS),
    nodes=st.integers(30, 450) | st.just(yamlfast.MAX_NODES),
    depth=st.integers(2, 9) | st.just(yamlfast.MAX_DEPTH),
)
@settings(max_examples=EXAMPLES * 2)
def test_the_one_pass_judges_the_limits_as_the_limit_pass(text, tail, nodes, depth):
    text += tail
    with (
        mock.patch.object(yamlfast, "MAX_NODES", nodes),
        mock.patch.object(yamlfast, "MAX_DEPTH", depth),
    ):
        first, alone = one_pass(text, FILE), limit_problem(text, FILE)
    if isinstance(first, Built):
        event("built")
        assert alone is None
        assert first.data == yaml.load(text, Loader=yaml.CSafeLoader)
    else:
        event("refused" if first is not None else "handed to the full loader")
        assert first == alone


def test_a_bomb_after_an_ordinary_part_is_refused_at_its_line():
    levels = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 9))
    text = demo_text() + "l0: &l0 [lol]\n" + levels
    problem = one_pass(text, FILE)
    assert problem == limit_problem(text, FILE)
    assert problem is not None and not isinstance(problem, Built)
    assert "1,000,000 nodes" in problem.why_en
    assert text.splitlines()[problem.line - 1].startswith("l6: ")  # 1.1 million nodes


def _seen(answer: Built | Problem | None) -> object:
    """*answer* comparable across two reads (a Built's starts are by ``id``)."""
    if isinstance(answer, Built):
        return (answer.data, sorted(answer.starts.values()), answer.angled)
    return answer


def test_without_libyaml_the_same_is_read(monkeypatch):
    bomb = demo_text() + "a: &a [x, x, x]\nb: &b [*a, *a, *a]\nc: [*b, *b, *b]\n"
    texts = [demo_text(), bomb, demo_text() + "z: [[[[[[[[1]]]]]]]]\n", "a: 1\na: 2\n"]
    monkeypatch.setattr(yamlfast, "MAX_NODES", 420)
    monkeypatch.setattr(yamlfast, "MAX_DEPTH", 8)
    with_libyaml = [_seen(one_pass(text, FILE)) for text in texts]
    monkeypatch.delattr(yaml, "CSafeLoader")
    assert yamlfast.event_loader("").__class__ is yaml.SafeLoader
    assert [_seen(one_pass(text, FILE)) for text in texts] == with_libyaml
    assert [type(r).__name__ for r in with_libyaml] == ["tuple", "Problem", "Problem", "NoneType"]
