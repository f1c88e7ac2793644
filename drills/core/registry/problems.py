"""A registry's problems in both languages, each naming its file, line and field.

pydantic's validation errors become :class:`~drills.core.problem.Problem` objects
(Japanese first, then English); so do secret references that do not resolve now.
"""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from drills.core.problem import Problem
from drills.core.yamlpos import LineMap, dotted
from probes.settings import SecretRef, SecretUnresolvable

__all__ = ["problem_at", "secret_ref_problems", "validation_problems"]

_JA = {
    "missing": "必須の項目がありません",
    "extra_forbidden": "未知のキーです（綴りを確認してください）",
    "string_type": "文字列が必要です",
    "float_parsing": "数値が必要です",
    "int_parsing": "整数が必要です",
    "bool_parsing": "true か false が必要です",
    "list_type": "リストが必要です",
    "dict_type": "マッピング（キー: 値）が必要です",
    "model_type": "マッピング（キー: 値）が必要です",
    "too_short": "空にできません",
    "greater_than": "値が小さすぎます",
    "less_than_equal": "値が大きすぎます",
    "greater_than_equal": "値が小さすぎます",
    "literal_error": "許されない値です",
    "finite_number": "有限の数が必要です（.nan や .inf は使えません）",
}


_BOUNDS = {
    "greater_than": "より大きい値",
    "greater_than_equal": "以上の値",
    "less_than": "より小さい値",
    "less_than_equal": "以下の値",
}


def problem_at(file: str, lines: LineMap, path: tuple[str | int, ...], ja: str, en: str) -> Problem:
    """A problem at *path*: its line from the line map, its dotted field name."""
    return Problem(file, lines.line(path), dotted(path), ja, en)


def validation_problems(
    exc: ValidationError, prefix: tuple[str | int, ...], file: str, lines: LineMap
) -> list[Problem]:
    out = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        path = (*prefix, *loc)
        msg = str(err["msg"]).removeprefix("Value error, ")
        ja = _JA.get(str(err["type"]), msg)
        cause = err.get("ctx", {}).get("error")
        if isinstance(getattr(cause, "ja", None), str) and isinstance(
            getattr(cause, "en", None), str
        ):
            ja, msg = cause.ja, cause.en  # type: ignore[union-attr]
        elif err["type"] == "value_error":
            ja = msg
        elif err["type"] in _BOUNDS and "ctx" in err:
            bound = next(iter(err["ctx"].values()))
            shown = f"{bound:g}" if isinstance(bound, float) else bound
            ja = f"{shown} {_BOUNDS[str(err['type'])]}が必要です（{msg}）"
        elif ja != msg:
            ja = f"{ja}（{msg}）"
        out.append(problem_at(file, lines, path, ja, msg))
    return out


def secret_ref_problems(
    model: BaseModel, path: tuple[str | int, ...], file: str, lines: LineMap
) -> list[Problem]:
    out: list[Problem] = []
    for name, value in vars(model).items():  # the fields (iterating the model costs 10x)
        if not isinstance(value, (SecretRef, BaseModel)):
            continue
        here = (*path, name)
        if isinstance(value, SecretRef):
            try:
                value.verify()  # read, not registered for redaction: the send does that
            except UnicodeDecodeError:
                out.append(
                    problem_at(
                        file,
                        lines,
                        here,
                        f"秘密情報 {value} のファイルが UTF-8 ではありません",
                        f"the file of secret {value} is not UTF-8",
                    )
                )
            except SecretUnresolvable as exc:
                out.append(
                    problem_at(
                        file,
                        lines,
                        here,
                        f"秘密情報 {value} を解決できません（{exc.ja}）",
                        f"cannot resolve secret {value} ({exc.en})",
                    )
                )
        elif isinstance(value, BaseModel):
            out.extend(secret_ref_problems(value, here, file, lines))
    return out
