"""Simulators: the far end of each channel kind, on real loopback sockets.

A registry channel with a ``sim:`` block runs against its kind's simulator.
One simulator per kind serves every simulated channel of that kind in a drill;
each channel brings its own knobs::

    sim:
      latency: {dist: lognormal, median: 800ms, sigma: 0.4}   # or just "300ms"
      loss: 0.05          # accepted, then never shows up at the far end
      outage: false       # connection refused (the channel's port is closed)
      rate_limit: 5       # messages per second before 429 / 4xx "slow down"
      capacity: 20        # messages per second the far end can deliver; beyond it they
                          # queue (first in, first out) and the visible latency grows
      reject: auth        # the provider refuses our credentials

The contract for a kind's simulator::

    sim = SimClass(seed=1)                # each channel gets its own stream: sim.rng_for(key)
    await sim.start()
    settings = sim.add_channel("131211/chat-main", knobs, raw_settings)  # -> dict
    ...                                   # probe built from ``settings`` talks to it
    sim.set_outage("131211/chat-main", True)   # outage steps take a channel away
    sim.ledger                            # ground truth per token (probes.sim.ledger)
    await sim.stop()
"""

from __future__ import annotations

import math
import random
import socket
import time
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from probes.settings import Duration
from probes.sim.ledger import Ledger

__all__ = [
    "LatencySpec",
    "SimKnobs",
    "Simulator",
    "TokenBucket",
    "closed_port",
    "free_port",
    "reserve_port",
]


class LatencySpec(BaseModel):
    """Injected far-end latency: fixed, uniform(low, high) or log-normal(median, sigma).

    Every value is finite (``.nan``/``.inf`` are refused: a NaN latency would lose
    every message); 0 is allowed (an instant far end).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    dist: Literal["fixed", "uniform", "lognormal"] = Field(
        default="fixed",
        description="分布: fixed（固定）、uniform（一様）、lognormal（対数正規） / distribution: fixed, uniform, lognormal",
    )
    value: Duration = Field(default=0.0, description="fixed の遅延 / the fixed latency")
    low: Duration = Field(default=0.0, description="uniform の下限 / uniform's lower bound")
    high: Duration = Field(default=0.0, description="uniform の上限 / uniform's upper bound")
    median: Duration = Field(default=0.0, description="lognormal の中央値 / lognormal's median")
    sigma: float = Field(
        default=0.5, ge=0.0, le=3.0, description="lognormal のばらつき / lognormal's spread"
    )

    @model_validator(mode="before")
    @classmethod
    def _from_scalar(cls, data: Any) -> Any:
        if isinstance(data, str | int | float) and not isinstance(data, bool):
            return {"dist": "fixed", "value": data}
        return data

    @model_validator(mode="after")
    def _check(self) -> LatencySpec:
        if self.dist == "uniform" and self.high < self.low:
            raise ValueError("uniform latency needs low <= high")
        return self

    def sample(self, rng: random.Random) -> float:
        if self.dist == "fixed":
            return self.value
        if self.dist == "uniform":
            return rng.uniform(self.low, self.high)
        return self.median * math.exp(rng.gauss(0.0, self.sigma))

    def mean(self) -> float:
        if self.dist == "fixed":
            return self.value
        if self.dist == "uniform":
            return (self.low + self.high) / 2
        return self.median * math.exp(self.sigma**2 / 2)


class SimKnobs(BaseModel):
    """Per-channel behaviour of a simulated far end (every number finite)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    latency: LatencySpec = Field(
        default=LatencySpec(),
        description='遠端の遅延（"300ms" か分布） / far-end latency ("300ms" or a distribution)',
    )
    loss: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="受け付けたのに届かない割合 / the share accepted but never delivered",
    )
    outage: bool = Field(
        default=False,
        description="true: 接続を拒否する（停止中） / true: connections are refused (an outage)",
    )
    rate_limit: float | None = Field(
        default=None,
        gt=0,
        description='毎秒この通数を超えると「混雑」（429） / messages per second before "slow down" (429)',
    )
    capacity: float | None = Field(
        default=None,
        gt=0,
        description="毎秒配信できる通数（超えると待ち行列） / messages per second the far end delivers (beyond: a queue)",
    )
    reject: Literal["auth"] | None = Field(
        default=None,
        description="auth: 認証を拒否する / auth: the provider refuses our credentials",
    )


class TokenBucket:
    """A rate limiter: ``take()`` is False when the caller must be told 429."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def retry_after(self) -> float:
        return max(0.0, (1.0 - self.tokens) / self.rate)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on *host*."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def reserve_port(host: str = "127.0.0.1") -> socket.socket:
    """A port held for a listener that another component will start later.

    The socket is bound with ``SO_REUSEADDR`` but not listening: the kernel will
    neither hand the port to another ``bind(0)`` nor use it as the local port of
    an outgoing connection, yet a listener with ``SO_REUSEADDR`` (aiohttp's default)
    can bind it. :func:`free_port` leaves a window in which the port can be taken
    (seen here: ``address already in use`` under a loaded test run). Close the
    socket once the listener is no longer needed.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock


def closed_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on: connecting to it is refused (an outage)."""
    return free_port(host)


class Simulator(ABC):
    """The far end of one channel kind, serving many simulated channels."""

    kind: ClassVar[str]

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self.rng = self.stream("simulator")
        self.knobs: dict[str, SimKnobs] = {}
        self.ledger = Ledger(getattr(self, "kind", type(self).__name__))
        self._streams: dict[str, random.Random] = {}

    def stream(self, name: str) -> random.Random:
        """An independent random stream for *name*, derived from the seed (or unseeded).

        Two simulators, or two channels of one, never share a stream: with one
        ``--seed`` every kind at loss 0.2 must not drop the very same positions.
        """
        if self.seed is None:
            return random.Random()
        kind = getattr(self, "kind", type(self).__name__)
        return random.Random(f"tsunagari:{self.seed}:{kind}:{name}")

    def rng_for(self, channel_key: str) -> random.Random:
        """The channel's own random stream (latency samples, loss draws)."""
        rng = self._streams.get(channel_key)
        if rng is None:
            rng = self._streams[channel_key] = self.stream("channel:" + channel_key)
        return rng

    @staticmethod
    @abstractmethod
    def placeholder_settings() -> dict[str, Any]:
        """Settings that make a ``sim:`` channel's raw settings validate."""

    @classmethod
    def settings_to_validate(cls, raw_settings: dict[str, Any]) -> dict[str, Any]:
        """What the registry validates for a ``sim:`` channel: the placeholders, then its own keys."""
        return {**cls.placeholder_settings(), **raw_settings}

    @abstractmethod
    async def start(self) -> None:
        """Listen on loopback."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop listening; drop pending deliveries."""

    @abstractmethod
    def add_channel(
        self, channel_key: str, knobs: SimKnobs, raw_settings: dict[str, Any]
    ) -> dict[str, Any]:
        """Register a channel; return the complete settings its probe should use."""

    def set_outage(self, channel_key: str, down: bool) -> None:
        """Take a channel away (or give it back) while the drill runs."""
        self.knobs[channel_key] = self.knobs[channel_key].model_copy(update={"outage": down})
        self.ledger.down(channel_key, down)
