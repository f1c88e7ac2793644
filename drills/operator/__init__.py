"""The operator layer: scenario files, the pytest plugin, its session, options and outputs."""
