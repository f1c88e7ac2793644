"""The Prometheus alert rules (``prometheus/tsunagari.rules.yml``) and their YAML."""

from __future__ import annotations

from typing import Any

import yaml

from dashboards.panels import TLS_WARNING_DAYS

READINESS_THRESHOLD = 75  # below grade B (README, scoring): 要改善


def _alert(
    name: str, expr: str, for_: str, severity: str, ja: str, en: str, **extra: str
) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity, "team": "tsunagari"},
        "annotations": {"summary": f"{ja} / {en}", **extra},
    }


MUNI_RULE_LABELS = "municipality_code, municipality_name"
# Failing for this long before it pages: a minute's blip (a server restart) does not.
PREFLIGHT_FOR = "5m"

ALERT_RULES: dict[str, Any] = {
    "groups": [
        {
            "name": "tsunagari",
            "rules": [
                _alert(
                    "TsunagariReadinessLow",
                    f"tsunagari_readiness_score < {READINESS_THRESHOLD}",
                    "5m",
                    "warning",
                    f"{{{{ $labels.municipality_name }}}} の即応性スコアが {{{{ $value }}}}（{READINESS_THRESHOLD} 未満）",
                    f"readiness of {{{{ $labels.municipality_code }}}} is {{{{ $value }}}} (below {READINESS_THRESHOLD})",
                    scenario="{{ $labels.scenario }} @ {{ $labels.vantage }}",
                ),
                _alert(
                    "TsunagariChannelUnreachableTwice",
                    "tsunagari_channel_unreachable_streak >= 2",
                    "5m",
                    "critical",
                    "{{ $labels.municipality_name }} の {{ $labels.channel_id }} が {{ $value }} 回続けて不通",
                    "channel {{ $labels.channel_id }} of {{ $labels.municipality_code }} unreachable in {{ $value }} consecutive drills",
                ),
                _alert(
                    "TsunagariDrillOverdue",
                    (
                        f"(time() - max by ({MUNI_RULE_LABELS}) (tsunagari_municipality_last_drill_timestamp_seconds))\n"
                        f"  > on (municipality_code) group_left\n"
                        f"max by (municipality_code) (tsunagari_municipality_drill_interval_seconds)\n"
                        f"or on (municipality_code)\n"
                        f"(max by ({MUNI_RULE_LABELS}) (tsunagari_municipality_drill_interval_seconds)\n"
                        f"  unless on (municipality_code)\n"
                        f"max by (municipality_code) (tsunagari_municipality_last_drill_timestamp_seconds))"
                    ),
                    "0m",
                    "warning",
                    "{{ $labels.municipality_name }} が訓練間隔を超えて訓練されていません",
                    "{{ $labels.municipality_code }} has not been drilled within its drill_interval",
                ),
                _alert(
                    "TsunagariTLSCertificateExpiring",
                    (
                        "min by (municipality_code, municipality_name, channel_id, channel_kind) (\n"
                        "  tsunagari_tls_cert_expiry_timestamp_seconds\n"
                        "  or tsunagari_check_tls_cert_expiry_timestamp_seconds\n"
                        f") - time() < {TLS_WARNING_DAYS} * 86400"
                    ),
                    "5m",
                    "warning",
                    "{{ $labels.municipality_name }} の {{ $labels.channel_id }} の TLS 証明書が {{ $value | humanizeDuration }} 後に期限切れ",
                    "TLS certificate of {{ $labels.channel_id }} ({{ $labels.municipality_code }}) expires in {{ $value | humanizeDuration }}",
                ),
                _alert(
                    "TsunagariPreflightFailing",
                    f"max by ({MUNI_RULE_LABELS}, channel_id, channel_kind) (tsunagari_check_up) == 0",
                    PREFLIGHT_FOR,
                    "critical",
                    "{{ $labels.municipality_name }} の {{ $labels.channel_id }} がチェックに失敗しています（送信できない可能性）",
                    "preflight check of {{ $labels.channel_id }} ({{ $labels.municipality_code }}) is failing: the channel may not deliver",
                ),
                _alert(
                    "TsunagariRollCallIncomplete",
                    "tsunagari_roll_call_answered < tsunagari_roll_call_expected",
                    "5m",
                    "warning",
                    "{{ $labels.municipality_name }} の点呼で未回答者がいます（回答 {{ $value }} 人）",
                    "roll call of {{ $labels.municipality_code }} incomplete ({{ $value }} answered)",
                ),
            ],
        }
    ]
}

RULES_FILE = "prometheus/tsunagari.rules.yml"


class _RulesDumper(yaml.SafeDumper):
    """Multi-line expressions as ``|`` blocks, so the rules file reads like PromQL."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_RulesDumper.add_representer(str, _str)


def rules_yaml() -> str:
    header = "# Generated by dashboards/build.py — edit there, then run it.\n"
    return header + yaml.dump(
        ALERT_RULES, Dumper=_RulesDumper, allow_unicode=True, sort_keys=False, width=200
    )
