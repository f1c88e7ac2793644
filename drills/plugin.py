"""pytest plugin for operator scenarios (the ``drill`` fixture)."""
