"""YAML loading that remembers where every value came from.

``load_with_lines(text, file)`` returns the plain data and a map from a path
(``("municipalities", 0, "channels", 1, "kind")``) to its 1-based line, so
validation errors can name the line. Duplicate keys — a classic silent typo
in YAML — are reported as problems instead of being overwritten.
"""

from __future__ import annotations

from typing import Any

import yaml

from drills.core.errors import Problem

__all__ = ["LineMap", "load_with_lines"]

Path = tuple[str | int, ...]


class LineMap:
    """Path → line, falling back to the nearest enclosing path."""

    def __init__(self) -> None:
        self.lines: dict[Path, int] = {}

    def line(self, path: Path) -> int | None:
        for cut in range(len(path), -1, -1):
            found = self.lines.get(tuple(path[:cut]))
            if found is not None:
                return found
        return None


def _walk(node: yaml.Node, path: Path, lines: LineMap, problems: list[Problem], file: str) -> None:
    lines.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append(
                    Problem(
                        file,
                        line,
                        dotted((*path, key)),
                        f"キー {key!r} が重複しています（{seen[key]} 行目にもあります）",
                        f"duplicate key {key!r} (also on line {seen[key]})",
                    )
                )
            seen[key] = line
            lines.lines[(*path, key)] = line
            _walk(value_node, (*path, key), lines, problems, file)
            lines.lines[(*path, key)] = line
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), lines, problems, file)


def dotted(path: Path) -> str:
    """``municipalities[0].channels[1].kind`` from a path tuple."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top)"


def load_with_lines(text: str, file: str) -> tuple[Any, LineMap, list[Problem]]:
    """Parse *text*; return (data, line map, problems). Syntax errors raise ``Problem`` lists."""
    lines = LineMap()
    problems: list[Problem] = []
    loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present
    try:
        loader = loader_cls(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        why = str(getattr(exc, "problem", None) or exc)
        problems.append(
            Problem(file, line, "(yaml)", f"YAML の構文エラー: {why}", f"YAML syntax error: {why}")
        )
        return None, lines, problems
    if node is not None:
        _walk(node, (), lines, problems, file)
    return data, lines, problems
