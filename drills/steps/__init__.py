"""Drill steps beyond a broadcast: fallback chains, roll calls, acknowledgements, surges.

Each module holds one step's async procedure, its result type and its
verdicts; :mod:`drills.operator.scenario` wraps them in the synchronous operator API.
"""
