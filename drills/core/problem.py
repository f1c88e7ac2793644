"""One thing wrong in a file the operator wrote: where, which field, and why (ja and en).

Registry, scenario and sharing checks collect :class:`Problem` records and raise them
together (:class:`drills.core.errors.RegistryError`), so the operator fixes every one
at once. Apart from :mod:`drills.core.errors` so that ``tsunagari --help`` does not
import :mod:`dataclasses`.

    >>> Problem("registry.yaml", 12, "channels[0].kind", "不明な種類", "unknown kind").render("en")
    'registry.yaml:12: channels[0].kind: unknown kind'
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Problem"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a file: where, which field, and why (ja and en)."""

    file: str
    line: int | None
    field: str
    why_ja: str
    why_en: str

    def render(self, lang: str = "ja") -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        why = self.why_ja if lang == "ja" else self.why_en
        return f"{where}: {self.field}: {why}"
