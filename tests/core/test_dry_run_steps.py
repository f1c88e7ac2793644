"""One step API for both drills: every step a real run has, a dry run plans, with the same checks.

:class:`drills.operator.step_api.StepAPI` holds each step's arguments, targets and checks;
the real drill sends through its hooks, the dry run's records. These tests pin that a
step cannot be added to one and forgotten in the other, and that a dry run refuses a
wrong step exactly as the real run does.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drills.core.registry import load_registry
from drills.core.requirements import ScenarioMistake
from drills.operator.dryrun import DryRunContext, DryRunDrill
from drills.operator.scenario import ScenarioDrill, open_drill
from drills.operator.step_api import StepAPI

DEMO = Path(__file__).resolve().parents[2] / "drills" / "data" / "demo_registry.yaml"


def public(cls: type) -> set[str]:
    return {n for n, _ in inspect.getmembers(cls, callable) if not n.startswith("_")}


def _outage(drill: Any) -> None:
    with drill.outage("chat", to="131211"):
        pass


# every public step of the drill, called the way a scenario calls it; the action it plans
SAMPLES: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "preflight": ("preflight", lambda d: d.preflight(channels="chat", to="131211")),
    "broadcast": ("broadcast", lambda d: d.broadcast("参集", channels="chat", to="131211")),
    "fallback": ("fallback", lambda d: d.fallback("代替", order=["chat", "mail"], to="131211")),
    "outage": ("outage", _outage),
    "roll_call": ("roll_call", lambda d: d.roll_call("点呼", room="東京都/chat", to="131211")),
    "acknowledge": ("acknowledge", lambda d: d.acknowledge("確認", channels="mail", to="131016")),
    "surge": ("surge", lambda d: d.surge([5], channels="chat", to="131211", each="1s")),
}


def test_every_step_is_written_once_for_both_drills() -> None:
    steps = public(StepAPI)
    assert public(ScenarioDrill) == public(DryRunDrill) == steps
    for drill in (ScenarioDrill, DryRunDrill):  # neither drill has a step of its own
        own = {n for n in vars(drill) if not n.startswith("_")}
        assert own == set(), f"{drill.__name__} defines {own}: put the step in StepAPI"
        assert not getattr(drill, "__abstractmethods__", None), drill.__name__


def test_every_public_step_of_the_real_drill_has_a_dry_run_plan() -> None:
    assert set(SAMPLES) == public(ScenarioDrill), "a new step needs a sample here"
    ctx = DryRunContext(load_registry(DEMO), scenario="steps")
    for step, (action, call) in SAMPLES.items():
        before = len(ctx.plan)
        call(DryRunDrill(ctx, deadline=4.0, name=step))
        planned = ctx.plan[before:]
        assert planned and {r.action for r in planned} == {action}, step


MISTAKES: dict[str, Callable[[Any], Any]] = {
    "unknown-channel": lambda d: d.broadcast("x", channels="mial"),
    "fallback-without-within": lambda d: d.fallback("x", order=["chat", "mail"]),
    "staff-zero": lambda d: d.acknowledge("x", channels="mail", window="1s", staff=0),
    "simulated-wrong": lambda d: d.acknowledge("x", window="1s", simulated={"rate": 2}),
    "roll-call-nobody": lambda d: d.roll_call("x", room="東京都/chat", to="130001", within="1s"),
    "surge-processes": lambda d: d.surge([5], channels="chat", to="131211", processes=0),
    "surge-rest": lambda d: d.surge([5], channels="chat", to="131211", rest="soon"),
    "outage-unknown": lambda d: _outage_of(d, "chatt"),
}


def _outage_of(drill: Any, channel: str) -> None:
    with drill.outage(channel):
        pass


def _refusal(call: Callable[[Any], Any], drill: Any) -> str:
    with pytest.raises(ScenarioMistake) as refused:
        call(drill)
    return refused.value.render("en")


def test_a_wrong_step_is_refused_the_same_in_a_dry_run() -> None:
    """Each mistake, in a real drill (refused before anything is sent) and in a dry run."""
    dry = DryRunContext(load_registry(DEMO), scenario="mistakes")
    with open_drill(str(DEMO), scenario="mistakes", lang="en") as real:
        for case, call in MISTAKES.items():
            said = _refusal(call, real)
            assert _refusal(call, DryRunDrill(dry, name=case)) == said, case
            assert said and "Traceback" not in said, case
    assert dry.plan == []
