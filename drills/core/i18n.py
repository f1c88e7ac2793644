"""Japanese-first user text, English available.

Text lives next to where it is used, as a pair: ``t("参集してください", "Please assemble")``.
The language comes from ``--lang``, then ``TSUNAGARI_LANG``, then the locale
(ja when it starts with ``ja``), else English.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

__all__ = ["LANGS", "Text", "detect_lang"]

LANGS = ("ja", "en")


def detect_lang(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The user's language: ``--lang`` in *argv*, then the environment."""
    env = os.environ if environ is None else environ
    args = list(argv or [])
    for i, arg in enumerate(args):
        if arg == "--lang" and i + 1 < len(args) and args[i + 1] in LANGS:
            return args[i + 1]
        if arg.startswith("--lang=") and arg.split("=", 1)[1] in LANGS:
            return arg.split("=", 1)[1]
    explicit = env.get("TSUNAGARI_LANG", "")
    if explicit in LANGS:
        return explicit
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(var, "")
        if value:
            return "ja" if value.lower().startswith("ja") else "en"
    return "en"


class Text:
    """Chooses between a Japanese and an English string."""

    def __init__(self, lang: str = "ja") -> None:
        self.lang = lang if lang in LANGS else "en"

    def __call__(self, ja: str, en: str) -> str:
        return ja if self.lang == "ja" else en

    def pick(self, pair: str) -> str:
        """From ``"日本語 / English"`` (how probes phrase reasons), the right half."""
        if " / " not in pair:
            return pair
        ja, en = pair.split(" / ", 1)
        return ja if self.lang == "ja" else en
