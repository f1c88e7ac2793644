"""Dashboards and alert rules as code; run ``python dashboards/build.py`` (see there)."""
