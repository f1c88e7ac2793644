"""Seeded random registries for the oracle: every kind on ``sim:`` channels, random knobs.

    plan = random_registry(random.Random(3))
    registry = parse_registry(plan.yaml, "oracle-3.yaml")

One seed always gives the same registry (and, through ``Drill(seed=)``, the same
simulator streams). Latencies stay well below the short timeouts the oracle
drills use, so one drill takes about a second and sends a few hundred messages.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import yaml

__all__ = [
    "CHAT_KINDS",
    "KINDS",
    "ChannelPlan",
    "MunicipalityPlan",
    "RegistryPlan",
    "chain_registry",
    "municipality_code",
    "random_knobs",
    "random_registry",
]

CHAT_KINDS = ("webhook", "slack", "teams", "mattermost", "lineworks", "matrix")
KINDS = (*CHAT_KINDS, "mail", "twilio")


def municipality_code(prefix: str) -> str:
    """A 6-digit 全国地方公共団体コード with its check digit (*prefix*: 5 digits)."""
    weights = (6, 5, 4, 3, 2)
    total = sum(int(d) * w for d, w in zip(prefix, weights, strict=True))
    return prefix + str((11 - total % 11) % 10)


@dataclass(frozen=True)
class ChannelPlan:
    """One generated channel: its id, kind, ``sim:`` knobs and other raw settings."""

    id: str
    kind: str
    sim: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)

    def as_yaml(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, **self.settings, "sim": self.sim}


@dataclass(frozen=True)
class MunicipalityPlan:
    code: str
    name: str
    channels: tuple[ChannelPlan, ...]


@dataclass(frozen=True)
class RegistryPlan:
    """A generated registry: what it holds, and its YAML text."""

    seed: int
    slo_s: float
    municipalities: tuple[MunicipalityPlan, ...]

    @property
    def yaml(self) -> str:
        doc = {
            "defaults": {"slo": {"latency": f"{self.slo_s:g}s", "reachability": 0.9}},
            "municipalities": [
                {
                    "code": m.code,
                    "name": m.name,
                    "channels": [c.as_yaml() for c in m.channels],
                }
                for m in self.municipalities
            ],
        }
        return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)

    def channels(self) -> list[tuple[MunicipalityPlan, ChannelPlan]]:
        return [(m, c) for m in self.municipalities for c in m.channels]

    def describe(self) -> str:
        """One line per channel: ``131211/mail-1 mail {latency: ..., loss: 0.2}``."""
        return "\n".join(
            f"  {m.code}/{c.id} {c.kind} sim={c.sim} {c.settings or ''}" for m, c in self.channels()
        )


def _ms(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def random_latency(rng: random.Random, scale: float = 1.0) -> dict[str, Any] | str:
    """A latency spec: fixed, uniform or log-normal, mostly between 20 and 400 ms (× *scale*)."""
    dist = rng.choice(("fixed", "uniform", "lognormal"))
    if dist == "fixed":
        return _ms(rng.uniform(0.02, 0.4) * scale)
    if dist == "uniform":
        low = rng.uniform(0.01, 0.25) * scale
        return {
            "dist": "uniform",
            "low": _ms(low),
            "high": _ms(low + rng.uniform(0.0, 0.35) * scale),
        }
    return {
        "dist": "lognormal",
        "median": _ms(rng.uniform(0.05, 0.25) * scale),
        "sigma": round(rng.uniform(0.1, 0.7), 2),
    }


def random_knobs(rng: random.Random, *, faults: bool = True, scale: float = 1.0) -> dict[str, Any]:
    """``sim:`` knobs: a latency, and (with *faults*) sometimes loss, outage, rate limit, auth."""
    knobs: dict[str, Any] = {"latency": random_latency(rng, scale)}
    if not faults:
        return knobs
    roll = rng.random()
    if roll < 0.07:
        knobs["outage"] = True
    elif roll < 0.14:
        knobs["reject"] = "auth"
    elif roll < 0.20:
        knobs["loss"] = 1.0
    elif roll < 0.45:
        knobs["loss"] = round(rng.uniform(0.1, 0.5), 2)
    if rng.random() < 0.15:
        knobs["rate_limit"] = rng.choice((2, 3, 5, 10))
    return knobs


def _numbers(rng: random.Random, n: int) -> list[str]:
    return [f"+8190{rng.randint(1, 9)}{rng.randrange(10**7):07d}" for _ in range(n)]


def random_settings(
    rng: random.Random,
    kind: str,
    ident: str,
    *,
    mail_to: tuple[int, ...] = (1,),
    observed: bool = False,
) -> dict[str, Any]:
    """Raw settings beyond ``sim:``: several recipients where the kind has them (mail: as
    many ``to`` as drawn from *mail_to*; with *observed*, a random ``observed`` subset,
    else the probe's default of which address the observed mailbox receives)."""
    if kind == "mail":
        n = rng.choice(mail_to)
        to = [f"{ident}-{i}@oracle.example.lg.jp" for i in range(n)]
        if n == 1 or not observed:
            return {"to": to}
        # Which addresses land in the observed mailbox: the others are unconfirmed (accepted).
        return {"to": to, "observed": sorted(rng.sample(to, rng.randint(1, n)))}
    if kind == "twilio":
        to = _numbers(rng, rng.choice((1, 1, 2, 3)))
        settings: dict[str, Any] = {"to": to, "poll_interval": "100ms"}
        if rng.random() < 0.6:
            settings["status_callback"] = {}
        if rng.random() < 0.4:  # a drill number we can read: arrival seen, not only receipted
            settings["loopback"] = {"receiver": to[0], "receipt_grace": "200ms"}
        return settings
    return {}


def random_registry(
    rng: random.Random,
    *,
    seed: int = 0,
    kinds: tuple[str, ...] = KINDS,
    municipalities: int | None = None,
    channels: tuple[int, int] = (3, 6),
    faults: bool = True,
    slo_s: float | None = None,
    mail_to: tuple[int, ...] = (1,),
    observed: bool = False,
) -> RegistryPlan:
    """A registry over *kinds* (each appears at least once), random knobs and recipients."""
    count = municipalities if municipalities is not None else rng.randint(3, 5)
    # Every kind at least once, then random kinds; dealt out over the municipalities.
    wanted = [rng.randint(*channels) for _ in range(count)]
    pool = list(kinds) + [rng.choice(kinds) for _ in range(max(0, sum(wanted) - len(kinds)))]
    rng.shuffle(pool)
    munis = []
    used_prefixes: set[str] = set()
    for i in range(count):
        prefix = f"13{rng.randrange(1000):03d}"
        while prefix in used_prefixes:
            prefix = f"13{rng.randrange(1000):03d}"
        used_prefixes.add(prefix)
        code = municipality_code(prefix)
        take = wanted[i] if i < count - 1 else max(1, len(pool))
        mine, pool = pool[:take], pool[take:]
        chans = []
        for j, kind in enumerate(mine):
            ident = f"{kind}-{j + 1}"
            chans.append(
                ChannelPlan(
                    ident,
                    kind,
                    random_knobs(rng, faults=faults),
                    random_settings(
                        rng, kind, f"{code}-{ident}", mail_to=mail_to, observed=observed
                    ),
                )
            )
        munis.append(MunicipalityPlan(code, f"検証{i + 1}市", tuple(chans)))
    slo = slo_s if slo_s is not None else rng.choice((0.2, 0.3, 0.5))
    return RegistryPlan(seed, slo, tuple(munis))


def chain_registry(
    rng: random.Random,
    *,
    seed: int = 0,
    municipalities: int | None = None,
    ids: tuple[str, ...] = ("chat", "mail", "sms"),
    faults: bool = True,
    slo_s: float = 0.5,
    scale: float = 1.0,
) -> RegistryPlan:
    """Every municipality has the channels *ids* (``chat``: a random chat kind, ``mail``,
    ``sms``: twilio) — for fallback chains, roll calls in a shared room and acknowledgements."""
    kind_of = {"mail": "mail", "sms": "twilio"}
    count = municipalities if municipalities is not None else rng.randint(3, 6)
    munis = []
    prefixes = rng.sample(range(1000), count)
    for i, p in enumerate(prefixes):
        code = municipality_code(f"13{p:03d}")
        chans = []
        for ident in ids:
            kind = kind_of.get(ident) or rng.choice(CHAT_KINDS)
            chans.append(
                ChannelPlan(
                    ident,
                    kind,
                    random_knobs(rng, faults=faults, scale=scale),
                    random_settings(rng, kind, f"{code}-{ident}"),
                )
            )
        munis.append(MunicipalityPlan(code, f"検証{i + 1}町", tuple(chans)))
    return RegistryPlan(seed, slo_s, tuple(munis))
