"""YAML loading that remembers where every value came from, within fixed limits.

``load_with_lines(text, file)`` returns the plain data and a map from a path
(``("municipalities", 0, "channels", 1, "kind")``) to its 1-based line, so
validation errors can name the line. Duplicate keys — a classic silent typo
in YAML — are reported as problems instead of being overwritten.

Limits (a registry is a small file written by people; anything past these is
a mistake or an attack, and is refused with a problem naming the line):

* **Nodes after alias expansion:** at most :data:`MAX_NODES` (1,000,000). Every
  scalar, list and mapping counts, keys included, and an alias ``*a`` counts as
  many nodes as its anchor ``&a`` expands to. This is what stops a "billion
  laughs" (8 levels of 9 aliases, 386 bytes, would be 43 million nodes). A
  registry written out normally has one node per 5 (terse flow style) to 15
  bytes (each channel its own URL and secret files): 10,000 such channels are
  177,000 nodes, and the limit is some 100,000 channels however tersely written.
* **Nesting depth:** at most :data:`MAX_DEPTH` (64) lists and mappings inside
  each other; a registry needs 6.
* **No recursive aliases:** an alias inside the node its anchor names
  (``a: &x [*x]``) would expand forever.

The limits are checked on the parser's event stream *before* any node is
built, so a refused file costs one pass over its text and no memory. Before
that, :func:`read_limited` reads at most *limit* bytes of a file (the registry's
is 8 MiB) and refuses bytes that are not UTF-8, naming the line and the byte.
"""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Any

import yaml

from drills.core.problem import Problem

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "LineMap",
    "dotted",
    "load_with_lines",
    "read_limited",
    "text_problem",
    "too_many_nodes",
]

MAX_NODES = 1_000_000
"""Most nodes a document may have once every alias is expanded."""

MAX_DEPTH = 64
"""Most lists and mappings nested inside each other."""

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


def _loader(text: str) -> Any:
    loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present
    return loader_cls(text)


def too_many_nodes(file: str, line: int) -> Problem:
    """More than :data:`MAX_NODES` nodes, counted up to *line*."""
    return Problem(
        file,
        line,
        "(yaml)",
        f"エイリアスを展開すると要素が {MAX_NODES:,} 個を超えます"
        f"（上限 {MAX_NODES:,} 個。エイリアスの入れ子か、ファイルが大きすぎます）",
        f"more than {MAX_NODES:,} nodes once aliases are expanded (the limit is "
        f"{MAX_NODES:,}: nested aliases, or the file is too big)",
    )


def _limit_problem(text: str, file: str) -> Problem | None:
    """The first limit *text* breaks (see the module docstring), from its events alone."""
    loader = _loader(text)
    expanded = 0
    sizes: dict[str, int] = {}  # anchor → nodes it expands to (closed collections, scalars)
    stack: list[tuple[str | None, int]] = []  # open collections: (anchor, expanded so far)
    try:
        while (event := loader.get_event()) is not None:
            line = event.start_mark.line + 1
            size = 0
            if isinstance(event, yaml.AliasEvent):
                if any(anchor == event.anchor for anchor, _ in stack):
                    return Problem(
                        file,
                        line,
                        "(yaml)",
                        f"エイリアス *{event.anchor} が自分を含むアンカー &{event.anchor} を"
                        "参照しています（無限に展開されます）",
                        f"alias *{event.anchor} refers to the anchor &{event.anchor} that "
                        "contains it (it would expand forever)",
                    )
                size = sizes.get(str(event.anchor), 1)  # an unknown anchor: the composer says so
            elif isinstance(event, yaml.ScalarEvent):
                size = 1
                if event.anchor is not None:
                    sizes[event.anchor] = 1
            elif isinstance(event, yaml.CollectionStartEvent):
                expanded += 1
                stack.append((event.anchor, 1))
                if len(stack) > MAX_DEPTH:
                    return Problem(
                        file,
                        line,
                        "(yaml)",
                        f"入れ子が深すぎます（リストとマッピングは {MAX_DEPTH} 段まで）",
                        f"nested too deeply (at most {MAX_DEPTH} levels of lists and mappings)",
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                anchor, size = stack.pop()
                if anchor is not None:
                    sizes[anchor] = size
                expanded -= size  # already counted as it grew: only the parent grows now
            expanded += size
            if stack:
                anchor, grown = stack[-1]
                stack[-1] = (anchor, grown + size)
            if expanded > MAX_NODES:
                return too_many_nodes(file, line)
    except yaml.YAMLError:
        return None  # the syntax error is reported by the real load, with its line
    finally:
        loader.dispose()
    return None


def _map_events(text: str, lines: dict[Path, int]) -> None:
    """The lines :func:`_walk` records, from the events alone (no nodes held in memory).

    For a document :meth:`LineMap.later` may be given: one, with no aliases and no
    duplicate or non-scalar keys. A mapping's key and its value are at the key's line,
    a list's item at its own first line.
    """
    loader = _loader(text)
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


def _walk(root: yaml.Node, lines: LineMap, problems: list[Problem], file: str) -> None:
    """Record every path's line and every duplicate key (iterative: depth is no risk)."""
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


def dotted(path: Path) -> str:
    """``municipalities[0].channels[1].kind`` from a path tuple."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top)"


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
                builder.construct_object(node)
            except Exception:  # whatever the value's constructor raises
                return int(node.start_mark.line) + 1
        elif isinstance(node, yaml.MappingNode):
            todo.extend(n for pair in reversed(node.value) for n in reversed(pair))
        elif isinstance(node, yaml.SequenceNode):
            todo.extend(reversed(node.value))
    return None


def load_with_lines(text: str, file: str) -> tuple[Any, LineMap, list[Problem]]:
    """Parse *text*; return (data, line map, problems). Data is None when it cannot be read."""
    lines = LineMap()
    limit = _limit_problem(text, file)
    if limit is not None:
        return None, lines, [limit]
    loader = _loader(text)
    node: yaml.Node | None = None
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        return None, lines, [_syntax(file, exc)]
    except Exception as exc:  # PyYAML failing to build a value: `!!int ""`, `2001-02-30`
        line = _unbuildable_line(node) if node is not None else None
        why = str(exc)[:200]
        return (
            None,
            lines,
            [
                Problem(
                    file,
                    line,
                    "(yaml)",
                    f"YAML の値を読めません（日付・数値の誤りなど）: {why}",
                    f"a YAML value cannot be read (a wrong date or number?): {why}",
                )
            ],
        )
    finally:
        loader.dispose()
    problems: list[Problem] = []
    if node is not None:
        _walk(node, lines, problems, file)
    return data, lines, problems


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
