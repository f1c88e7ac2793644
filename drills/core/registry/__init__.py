"""The registry: municipalities, their channels, and each channel's SLO.

Loaded from YAML and validated *completely* before any message leaves; every
problem names the file, the line and the field, in Japanese and English::

    municipalities:
      - code: "131211"            # 全国地方公共団体コード, check digit verified
        name: 足立区
        tags: [23ku]
        slo: {latency: 60s, reachability: 0.99}
        channels:
          - id: chat-main
            kind: webhook          # found through the ``tsunagari.channels`` entry points
            sim: {latency: 300ms}  # a simulated channel (demo, tests)
            url: https://…

Limits: a registry file is at most :data:`MAX_REGISTRY_BYTES` (8 MiB,
8,388,608 bytes) of UTF-8 — some 30,000 channels each with its own URL and
secret files, so a national drill's 10,000 and more fit; once YAML aliases are
expanded it has at most 1,000,000 nodes, nested at most 64 deep, and no alias
inside its own anchor (:mod:`drills.core.yamlfast`). A check stops after
:data:`MAX_PROBLEMS` (1,000) problems and says so. Durations, latencies and reachability are finite:
``.nan`` and ``.inf`` are refused everywhere, ``0`` where it means nothing (an
SLO latency, a ``drill_interval``, a surge duration).

The drill marker (``defaults.marker``, default ``【訓練】``) must contain ``訓練``
or ``DRILL`` (any case), be one line and at most 32 characters. It leads every
message, so the word that says "this is a drill" is within the first 32
characters — what a phone's lock screen or a mail list shows — and no registry
can make a drill message look like a real alert.

Secrets are checked for the municipalities a run selects, not the others:
:func:`load_registry` with ``check_secrets=False`` validates the structure
(``env:``/``file:`` references are well-formed), then
:meth:`Registry.secret_problems` resolves the selected targets' references.

>>> check_digit_ok("131211"), check_digit_ok("131212")
(True, False)
"""

from drills.core.registry.loader import MAX_PROBLEMS, MAX_REGISTRY_BYTES, load_registry
from drills.core.registry.loader import parse_registry as parse_registry
from drills.core.registry.model import (
    MAX_MARKER_CHARS,
    SLO,
    Channel,
    Municipality,
    Registry,
    Target,
    check_digit_ok,
    known_kinds,
    load_kind,
)
from drills.core.registry.model import Defaults as Defaults
from drills.core.registry.model import SurgeAllowance as SurgeAllowance
from drills.core.registry.model import _MunicipalityModel as _MunicipalityModel
from drills.core.registry.model import _RegistryModel as _RegistryModel

# ``parse_registry``, ``Defaults``, ``SurgeAllowance`` and the two models the JSON Schema
# is generated from (drills.core.schema) are imported from here too, outside ``__all__``.
__all__ = [
    "MAX_MARKER_CHARS",
    "MAX_PROBLEMS",
    "MAX_REGISTRY_BYTES",
    "SLO",
    "Channel",
    "Municipality",
    "Registry",
    "Target",
    "check_digit_ok",
    "known_kinds",
    "load_kind",
    "load_registry",
]
