"""Fixtures for the chat tests: simulated far ends per kind, and a real Synapse.

One Synapse serves the whole session (each start-up costs ~2.5 s); the outage
case starts one more of its own, only when it runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from probes.base import Probe, ProbeEnv
from probes.chat.lineworks import LineWorksProbe
from probes.chat.matrix import MatrixProbe
from probes.chat.mattermost import MattermostProbe
from probes.chat.slack import SlackProbe
from probes.chat.teams import TeamsProbe
from probes.chat.webhook import WebhookProbe
from tests.chat.farends import FarEnd, SimFarEnd, SynapseFarEnd, SynapseSetup

SIM_KINDS: dict[str, type[Probe]] = {
    "webhook": WebhookProbe,
    "matrix": MatrixProbe,
    "slack": SlackProbe,
    "mattermost": MattermostProbe,
    "teams": TeamsProbe,
    "lineworks": LineWorksProbe,
}
ALL_KINDS = [*SIM_KINDS, "matrix-synapse"]


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseSetup]:
    setup = SynapseSetup.start(tmp_path_factory.mktemp("synapse"))
    try:
        yield setup
    finally:
        setup.hs.close()


@pytest.fixture
async def env() -> AsyncIterator[ProbeEnv]:
    env = ProbeEnv()
    yield env
    await env.aclose()


@pytest.fixture(
    params=[
        pytest.param(kind, marks=pytest.mark.servers) if kind == "matrix-synapse" else kind
        for kind in ALL_KINDS
    ]
)
async def far_end(
    request: pytest.FixtureRequest, env: ProbeEnv, tmp_path: Path
) -> AsyncIterator[FarEnd]:
    kind = request.param
    end: FarEnd
    if kind == "matrix-synapse":
        end = SynapseFarEnd(env, request.getfixturevalue("synapse"), tmp_path)
    else:
        end = await SimFarEnd(env, SIM_KINDS[kind]).start()
    try:
        yield end
    finally:
        await end.close()
