"""Hypothesis builders of registry-shaped YAML data, for more than one test folder."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def yaml_trees(
    scalars: st.SearchStrategy[Any], *, key_size: int, max_leaves: int
) -> st.SearchStrategy[Any]:
    """Trees of *scalars* in lists and mappings of up to 4 items (keys up to *key_size*
    characters), up to *max_leaves* leaves: what ``yaml.safe_dump`` can write."""
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(st.text(max_size=key_size), inner, max_size=4),
        ),
        max_leaves=max_leaves,
    )
