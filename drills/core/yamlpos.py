"""YAML read once for all: the data, where every value came from, and what is wrong with it.

:func:`read_yaml` is the one entry. It builds the data in one pass over libyaml's events
(:func:`drills.core.yamlfast.one_pass`, which also judges the limits: nodes after alias
expansion, depth, recursive aliases) and maps the lines only when a problem first asks
for one. Anything out of the ordinary it reads in full: composes the nodes, builds the
values and maps every line from them, reporting duplicate keys — a classic silent typo
in YAML — instead of overwriting them, and a value YAML cannot build or a syntax error
with its line. Either way a path (``("municipalities", 0, "channels", 1, "kind")``)
maps to its 1-based line, so validation errors can name the line.

Before that, :func:`read_limited` reads at most *limit* bytes of a file (the
registry's is 8 MiB) and refuses bytes that are not UTF-8, naming the line and the byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

import yaml

from drills.core.problem import Problem
from drills.core.yamlfast import Built, Unbuildable, build_scalar, event_loader, one_pass

__all__ = [
    "LineMap",
    "Loaded",
    "dotted",
    "read_in_full",
    "read_limited",
    "read_yaml",
    "text_problem",
]

Path = tuple[str | int, ...]


class LineMap:
    """Path → line, falling back to the nearest enclosing path.

    :meth:`later` makes one that maps its text only when a line is first asked for:
    a registry that loads cleanly never needs most of its lines.
    """

    def __init__(self) -> None:
        self._lines: dict[Path, int] = {}
        self._text: str | None = None

    @classmethod
    def later(cls, text: str) -> LineMap:
        """The lines of *text* (one document that composes), mapped when first asked for."""
        lines = cls()
        lines._text = text
        return lines

    @property
    def lines(self) -> dict[Path, int]:
        if self._text is not None:  # mapped aside, then swapped in: no reader sees half
            lines = dict(self._lines)
            _map_events(self._text, lines)
            self._lines, self._text = lines, None
        return self._lines

    def line(self, path: Path) -> int | None:
        lines = self.lines
        for cut in range(len(path), -1, -1):
            found = lines.get(tuple(path[:cut]))
            if found is not None:
                return found
        return None


@dataclass(frozen=True)
class Loaded:
    """What :func:`read_yaml` read: the data, its lines, and what it found."""

    data: Any
    """None when the text cannot be read (then *problems* say why) or holds nothing."""
    lines: LineMap
    problems: list[Problem]
    starts: dict[int, int]
    """First line of each mapping and list of *data*, by ``id``, when read in one pass
    (valid while *data* lives); empty when read in full."""
    angled: bool
    """Whether a scalar may hold ``<<`` (only then can a starter's placeholder be left)."""


def read_yaml(text: str, file: str) -> Loaded:
    """*text* read in one pass when it is ordinary, else in full (see the module docstring)."""
    first = one_pass(text, file)
    if isinstance(first, Built):
        return Loaded(first.data, LineMap.later(text), [], first.starts, first.angled)
    if first is not None:  # a limit broken: nothing is composed
        return Loaded(None, LineMap(), [first], {}, False)
    return read_in_full(text, file)


def read_in_full(text: str, file: str) -> Loaded:
    """*text*, within the limits, composed and built; every line mapped from the nodes.

    What :func:`read_yaml` falls back to for anything out of the ordinary, and the
    reference the tests hold its one pass against (the same data, the same lines).
    """
    lines = LineMap()
    loader = event_loader(text)
    node: yaml.Node | None = None
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        return Loaded(None, lines, [_syntax(file, exc)], {}, True)
    except Exception as exc:  # PyYAML failing to build a value: `!!int ""`, `2001-02-30`
        line = _unbuildable_line(node) if node is not None else None
        why = str(exc)[:200]
        problem = Problem(
            file,
            line,
            "(yaml)",
            f"YAML の値を読めません（日付・数値の誤りなど）: {why}",
            f"a YAML value cannot be read (a wrong date or number?): {why}",
        )
        return Loaded(None, lines, [problem], {}, True)
    finally:
        loader.dispose()
    problems: list[Problem] = []
    if node is not None:
        _walk(node, lines, problems, file)
    return Loaded(data, lines, problems, {}, True)


def _syntax(file: str, exc: Exception) -> Problem:
    mark = getattr(exc, "problem_mark", None)
    line = mark.line + 1 if mark is not None else None
    why = str(getattr(exc, "problem", None) or exc)
    return Problem(file, line, "(yaml)", f"YAML の構文エラー: {why}", f"YAML syntax error: {why}")


def _unbuildable_line(root: yaml.Node) -> int | None:
    """The line of the first scalar that cannot be built (``2001-02-30``, a 5000-digit int)."""
    builder = yaml.SafeLoader("")
    seen: set[int] = set()
    todo = [root]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            try:
                build_scalar(builder, node)
            except Unbuildable:
                return int(node.start_mark.line) + 1
        elif isinstance(node, yaml.MappingNode):
            todo.extend(n for pair in reversed(node.value) for n in reversed(pair))
        elif isinstance(node, yaml.SequenceNode):
            todo.extend(reversed(node.value))
    return None


# ------------------------------------------------------------------ the lines
#
# One rule, two loops: the document is at its first line; a mapping's key and its value
# are at the key's line (the last of a duplicate key's); a list's item at its own first
# line. :func:`_walk` applies it to composed nodes (any document: it also finds the
# duplicate keys); :func:`_map_events` to the events of a document read in one pass,
# holding no nodes. They stay two: folding the events' loop into the one pass would
# cost a branch an event on every load, and with aliases the events' lines differ
# from the nodes' (an alias's value takes its anchor's lines) — one_pass reads no alias.


def _walk(root: yaml.Node, lines: LineMap, problems: list[Problem], file: str) -> None:
    """The lines of *root*'s paths, and every duplicate key (iterative: depth is no risk)."""
    todo: list[tuple[yaml.Node, Path]] = [(root, ())]
    while todo:
        node, path = todo.pop()
        lines._lines.setdefault(path, node.start_mark.line + 1)
        children: list[tuple[yaml.Node, Path]] = []
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
                lines._lines[(*path, key)] = line
                children.append((value_node, (*path, key)))
        elif isinstance(node, yaml.SequenceNode):
            children = [(item, (*path, i)) for i, item in enumerate(node.value)]
        todo.extend(reversed(children))


def _map_events(text: str, lines: dict[Path, int]) -> None:
    """The lines of *text*'s paths, from its events alone: for a document
    :meth:`LineMap.later` may be given (one, no aliases, no duplicate or non-scalar keys)."""
    loader = event_loader(text)
    frames: list[list[Any]] = []  # per open collection: [path, next index or None, key path]
    try:
        while (event := loader.get_event()) is not None:
            is_scalar = isinstance(event, yaml.ScalarEvent)
            if isinstance(event, yaml.CollectionEndEvent):
                frames.pop()
                continue
            if not (is_scalar or isinstance(event, yaml.CollectionStartEvent)):
                continue
            line = event.start_mark.line + 1
            if not frames:
                path: Path = ()
                lines[path] = line
            elif (frame := frames[-1])[1] is not None:  # a list's item
                path = (*frame[0], frame[1])
                frame[1] += 1
                lines.setdefault(path, line)
            elif frame[2] is None:  # a mapping's key
                key: Path = (*frame[0], str(getattr(event, "value", "")))
                frame[2] = key
                lines[key] = line
                continue
            else:  # its value, at its key's line
                path, frame[2] = frame[2], None
            if not is_scalar:
                seq = isinstance(event, yaml.SequenceStartEvent)
                frames.append([path, 0 if seq else None, None])
    finally:
        loader.dispose()


def dotted(path: Path) -> str:
    """``municipalities[0].channels[1].kind`` from a path tuple."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top)"


# ------------------------------------------------------------------ reading the file


def _too_big(file: str, size: int, limit: int) -> Problem:
    mib = f"{limit / 2**20:g} MiB = " if limit >= 2**20 else ""
    return Problem(
        file,
        None,
        "(file)",
        f"レジストリが大きすぎます（{size:,} バイト以上。上限は {mib}{limit:,} バイト）。"
        "ファイルを確認してください",
        f"the registry is too big ({size:,} bytes or more; the limit is {mib}{limit:,} bytes). "
        "Check the file",
    )


def _not_utf8(file: str, line: int, at_ja: str, at_en: str) -> Problem:
    return Problem(
        file,
        line,
        "(file)",
        f"UTF-8 ではない文字があります（{at_ja}）。UTF-8 で保存し直してください",
        f"not UTF-8 ({at_en}); save the file as UTF-8",
    )


def text_problem(text: str, file: str, limit: int) -> Problem | None:
    """Why *text* cannot be a file of at most *limit* UTF-8 bytes (None if it can)."""
    if len(text) > limit:  # a character is at least one byte
        return _too_big(file, len(text), limit)
    if len(text) > limit // 4 and len(text.encode("utf-8", "surrogatepass")) > limit:
        return _too_big(file, len(text.encode("utf-8", "surrogatepass")), limit)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: no file can hold it as UTF-8
        line = text[: exc.start].count("\n") + 1
        return _not_utf8(file, line, f"{exc.start} 文字目", f"character {exc.start}")
    return None


def read_limited(path: FsPath, limit: int) -> tuple[str | None, list[Problem]]:
    """The text of *path* if it is at most *limit* bytes of UTF-8; else None and why."""
    file = str(path)
    try:
        with path.open("rb") as f:
            raw = f.read(limit + 1)
    except OSError as exc:
        return None, [
            Problem(
                file,
                None,
                "(file)",
                f"レジストリを読めません: {exc.strerror}",
                f"cannot read registry: {exc.strerror}",
            )
        ]
    if len(raw) > limit:
        return None, [_too_big(file, len(raw), limit)]
    try:
        return raw.decode("utf-8"), []
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        byte = f"0x{raw[exc.start]:02x}"
        at_ja, at_en = f"{exc.start} バイト目の {byte}", f"byte {byte} at offset {exc.start}"
        return None, [_not_utf8(file, line, at_ja, at_en)]
