"""Drill steps beyond a broadcast: fallback chains, roll calls, acknowledgements.

Each module holds one step's async procedure, its result type and its
verdicts; :mod:`drills.scenario` wraps them in the synchronous operator API.
"""
