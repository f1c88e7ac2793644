"""Post the Markdown summary of a scorecard to a chat channel of the registry.

The post is a drill message like any other: it carries the drill marker and a
token (``DrillMessage`` enforces both) and opens with "訓練結果報告 / drill
report", so nobody mistakes it for an alert. A live channel needs ``live``,
exactly as a drill does; simulated channels have no one to read a report.
"""

from __future__ import annotations

from typing import Any

from drills.core.errors import DrillSafetyError
from drills.core.i18n import Text
from drills.core.registry import Registry, Target
from drills.reporting.text import to_markdown
from probes.base import Accepted, DrillMessage, ProbeEnv, new_token

__all__ = ["find_target", "post_summary", "report_message"]


def find_target(registry: Registry, spec: str) -> Target:
    """``CODE/CHANNEL`` (or ``NAME/CHANNEL``) → the registry target; KeyError if none."""
    muni_key, _, channel_id = spec.partition("/")
    municipality = registry.municipality(muni_key)
    for channel in municipality.channels:
        if channel.id == channel_id:
            return Target(municipality, channel)
    raise KeyError(spec)


def report_message(card: dict[str, Any], registry: Registry, lang: str) -> DrillMessage:
    t = Text(lang)
    heading = t(
        "訓練結果報告（訓練です。実際の災害情報ではありません）",
        "Drill report (a drill, not a real emergency)",
    )
    return DrillMessage(
        token=new_token(),
        text=f"{heading}\n\n{to_markdown(card, lang, summary=True)}",
        marker=registry.marker,
        subject=t("訓練結果報告", "Drill report") + f" {card['run_id']}",
    )


async def post_summary(
    card: dict[str, Any],
    registry: Registry,
    target: Target,
    *,
    lang: str = "ja",
    live: bool = False,
) -> Accepted:
    """Send the summary through *target*'s probe; return what the provider said.

    Raises DrillSafetyError for a live channel without *live* or a simulated
    channel, and the probe's ChannelRejected / ChannelUnreachable as they come.
    """
    channel = target.channel
    if channel.simulated:
        raise DrillSafetyError(
            f"{target.key}: シミュレータのチャネルには報告を投稿できません / "
            "a simulated channel has no readers for a report"
        )
    if not live:
        raise DrillSafetyError(
            f"{target.key}: 実チャネルへの投稿には --live が必要です / "
            "posting to a live channel needs --live"
        )
    env = ProbeEnv(live=live, lang=lang)
    probe = channel.probe_class()(target.key, channel.settings, env)
    try:
        await probe.open()
        return await probe.send(report_message(card, registry, lang))
    finally:
        await probe.close()
        await env.aclose()
