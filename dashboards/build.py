"""Dashboards and alert rules as code: ``python dashboards/build.py [--check]``.

Generates, next to this file:

- ``grafana/*.json`` — three Grafana dashboards (CIO overview, municipality
  detail, drill run), built with Grafana Labs' grafana-foundation-sdk; the
  Prometheus data source is the ``datasource`` variable;
- ``prometheus/tsunagari.rules.yml`` — the alert rules.

``--check`` writes nothing and exits 1 if a committed file differs from what
this script generates (the test suite runs it). Every metric and label used
here is one ``drills.metrics.collector`` exports; the integration test proves it by
evaluating every expression against a real Prometheus.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders.dashboard import Dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder

HERE = Path(__file__).resolve().parent
# The boards are the ``dashboards`` package beside this file; run as a script, only this
# folder is on sys.path (the checkout is too when the project is installed editable).
if str(HERE.parent) not in sys.path:
    sys.path.append(str(HERE.parent))

from dashboards.cio_overview import cio_overview  # noqa: E402
from dashboards.drill_run import drill_run  # noqa: E402
from dashboards.municipality_detail import municipality_detail  # noqa: E402
from dashboards.rules import RULES_FILE, rules_yaml  # noqa: E402

DASHBOARDS = {
    "grafana/cio-overview.json": cio_overview,
    "grafana/municipality-detail.json": municipality_detail,
    "grafana/drill-run.json": drill_run,
}


# --------------------------------------------------------------------------- output


def dashboard_json(d: Dashboard) -> str:
    raw = json.loads(JSONEncoder().encode(d.build()))
    return json.dumps(raw, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def render_all() -> dict[str, str]:
    """Every generated file: relative path → content."""
    out = {path: dashboard_json(make()) for path, make in DASHBOARDS.items()}
    out[RULES_FILE] = rules_yaml()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if a committed file is out of date"
    )
    args = parser.parse_args(argv)
    stale = []
    for rel, text in render_all().items():
        path = HERE / rel
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(rel)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(HERE.parent)}")
    if stale:
        print("out of date (run python dashboards/build.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
