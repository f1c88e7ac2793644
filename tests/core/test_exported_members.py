"""The public surface is explicit and pinned (as httpx does)."""

import importlib

import pytest

import drills
import probes


def test_drills_exports():
    assert sorted(drills.__all__) == sorted(
        [
            "SLO",
            "Channel",
            "Delivery",
            "Drill",
            "DrillSafetyError",
            "HarnessError",
            "Journal",
            "LockBusy",
            "Municipality",
            "Outcome",
            "Problem",
            "Registry",
            "RegistryError",
            "ScenarioError",
            "StepResult",
            "Target",
            "TsunagariError",
            "load_registry",
            "parse_registry",
        ]
    )
    for name in drills.__all__:
        assert getattr(drills, name).__module__.startswith("drills.") or callable(
            getattr(drills, name)
        )


def test_probes_exports():
    assert sorted(probes.__all__) == sorted(
        [
            "DEFAULT_MARKER",
            "Accepted",
            "ChannelFault",
            "ChannelRejected",
            "ChannelSettings",
            "ChannelUnreachable",
            "Clock",
            "DrillMessage",
            "Duration",
            "ObserverFault",
            "Probe",
            "ProbeEnv",
            "ProbeError",
            "SecretRef",
            "SecretUnresolvable",
            "Sighting",
            "Sightings",
            "find_tokens",
            "new_token",
        ]
    )
    for name in probes.__all__:
        assert hasattr(probes, name)


def test_error_tree_inherits_builtins():
    assert issubclass(drills.RegistryError, ValueError)
    assert issubclass(drills.DrillSafetyError, PermissionError)
    assert issubclass(probes.ChannelUnreachable, ConnectionError)
    assert issubclass(probes.ChannelRejected, probes.ChannelFault)
    assert not issubclass(probes.ObserverFault, probes.ChannelFault)


@pytest.mark.parametrize("package", [drills, probes])
def test_exports_are_lazy_and_the_same_objects(package):
    """PEP 562: each name is imported on first use, from the module it lives in."""
    assert sorted(package._HOME) == sorted(package.__all__)
    for name, home in package._HOME.items():
        assert getattr(package, name) is getattr(importlib.import_module(home), name)
    assert set(package.__all__) <= set(dir(package))
    with pytest.raises(AttributeError, match="no_such_name"):
        package.no_such_name  # noqa: B018
    namespace: dict[str, object] = {}
    exec(f"from {package.__name__} import *", namespace)
    assert set(package.__all__) <= set(namespace)
