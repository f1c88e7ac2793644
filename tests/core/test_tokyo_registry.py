"""All of Tokyo in one registry: the shipped file against this test's own source table.

``SOURCE`` below is written out here, independently of the shipped
``drills/data/prefectures/13.yaml`` (総務省「全国地方公共団体コード」: the code with its
check digit, the name, the area): the check digit catches a mistyped digit, the
table catches a correct code under the wrong name.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import jsonschema
import pytest
import yaml

from drills.cli import main
from drills.core.errors import RegistryError
from drills.core.prefectures import (
    available_prefectures,
    prefecture_file,
    prefecture_number,
    prefecture_registry,
)
from drills.core.registry import check_digit_ok, load_registry, parse_registry
from drills.core.schema import registry_schema

ROOT = Path(__file__).resolve().parents[2]

# (code, 名称, area): area is 都, 23区, 西多摩/南多摩/北多摩 (多摩) or the 支庁 (島しょ).
SOURCE: tuple[tuple[str, str, str], ...] = (
    ("130001", "東京都", "都"),
    ("131016", "千代田区", "23区"),
    ("131024", "中央区", "23区"),
    ("131032", "港区", "23区"),
    ("131041", "新宿区", "23区"),
    ("131059", "文京区", "23区"),
    ("131067", "台東区", "23区"),
    ("131075", "墨田区", "23区"),
    ("131083", "江東区", "23区"),
    ("131091", "品川区", "23区"),
    ("131105", "目黒区", "23区"),
    ("131113", "大田区", "23区"),
    ("131121", "世田谷区", "23区"),
    ("131130", "渋谷区", "23区"),
    ("131148", "中野区", "23区"),
    ("131156", "杉並区", "23区"),
    ("131164", "豊島区", "23区"),
    ("131172", "北区", "23区"),
    ("131181", "荒川区", "23区"),
    ("131199", "板橋区", "23区"),
    ("131202", "練馬区", "23区"),
    ("131211", "足立区", "23区"),
    ("131229", "葛飾区", "23区"),
    ("131237", "江戸川区", "23区"),
    ("132012", "八王子市", "南多摩"),
    ("132021", "立川市", "北多摩"),
    ("132039", "武蔵野市", "北多摩"),
    ("132047", "三鷹市", "北多摩"),
    ("132055", "青梅市", "西多摩"),
    ("132063", "府中市", "北多摩"),
    ("132071", "昭島市", "北多摩"),
    ("132080", "調布市", "北多摩"),
    ("132098", "町田市", "南多摩"),
    ("132101", "小金井市", "北多摩"),
    ("132110", "小平市", "北多摩"),
    ("132128", "日野市", "南多摩"),
    ("132136", "東村山市", "北多摩"),
    ("132144", "国分寺市", "北多摩"),
    ("132152", "国立市", "北多摩"),
    ("132187", "福生市", "西多摩"),
    ("132195", "狛江市", "北多摩"),
    ("132209", "東大和市", "北多摩"),
    ("132217", "清瀬市", "北多摩"),
    ("132225", "東久留米市", "北多摩"),
    ("132233", "武蔵村山市", "北多摩"),
    ("132241", "多摩市", "南多摩"),
    ("132250", "稲城市", "南多摩"),
    ("132276", "羽村市", "西多摩"),
    ("132284", "あきる野市", "西多摩"),
    ("132292", "西東京市", "北多摩"),
    ("133035", "瑞穂町", "西多摩"),
    ("133051", "日の出町", "西多摩"),
    ("133078", "檜原村", "西多摩"),
    ("133086", "奥多摩町", "西多摩"),
    ("133612", "大島町", "大島支庁"),
    ("133621", "利島村", "大島支庁"),
    ("133639", "新島村", "大島支庁"),
    ("133647", "神津島村", "大島支庁"),
    ("133817", "三宅村", "三宅支庁"),
    ("133825", "御蔵島村", "三宅支庁"),
    ("134015", "八丈町", "八丈支庁"),
    ("134023", "青ヶ島村", "八丈支庁"),
    ("134210", "小笠原村", "小笠原支庁"),
)
TAMA = ("西多摩", "南多摩", "北多摩")
ISLANDS = ("大島支庁", "三宅支庁", "八丈支庁", "小笠原支庁")
# the English word each kind of municipality ends with
ENGLISH = {"区": " City", "市": " City", "町": " Town", "村": " Village"}


def own_check_digit(code5: str) -> str:
    """This test's own computation: weights 6,5,4,3,2; 11 − (sum mod 11), last digit."""
    total = sum(int(d) * w for d, w in zip(code5, (6, 5, 4, 3, 2), strict=True))
    return str((11 - total % 11) % 10)


@pytest.fixture(scope="module")
def shipped() -> Path:
    # found as package data (importlib.resources), as an installed package finds it
    return Path(str(prefecture_file("13")))


@pytest.fixture(scope="module")
def tokyo(shipped: Path):  # type: ignore[no-untyped-def]
    return load_registry(shipped)


def test_the_source_table_itself_is_sound() -> None:
    """63 rows, unique codes, valid check digits; 23 区, 26 市, 5 町, 8 村 and 東京都."""
    codes = [code for code, _, _ in SOURCE]
    assert len(SOURCE) == 63 and len(set(codes)) == 63
    assert all(own_check_digit(c[:5]) == c[5] and check_digit_ok(c) for c in codes)
    kinds = Counter(name[-1] for _, name, _ in SOURCE)
    assert kinds == {"区": 23, "市": 26, "町": 5, "村": 8, "都": 1}


def test_the_shipped_registry_is_the_source_table(tokyo, shipped: Path) -> None:  # type: ignore[no-untyped-def]
    assert shipped.parts[-3:] == ("data", "prefectures", "13.yaml")
    assert shipped.is_relative_to(ROOT / "drills")  # package data, not a test file
    rows = [(m.code, m.name) for m in tokyo.municipalities]
    assert len(rows) == 63
    assert rows == [(code, name) for code, name, _ in SOURCE]
    assert len({code for code, _ in rows}) == 63
    assert all(check_digit_ok(code) and own_check_digit(code[:5]) == code[5] for code, _ in rows)
    assert Counter(m.name[-1] for m in tokyo.municipalities) == {
        "区": 23,
        "市": 26,
        "町": 5,
        "村": 8,
        "都": 1,
    }


def test_english_names_and_tags(tokyo) -> None:  # type: ignore[no-untyped-def]
    area = {code: where for code, _, where in SOURCE}
    names_en = [m.name_en for m in tokyo.municipalities]
    assert all(names_en) and len(set(names_en)) == 63  # 豊島区 Toshima City ≠ 利島村
    for m in tokyo.municipalities:
        tags, where = set(m.tags), area[m.code]
        if m.code == "130001":
            assert m.name_en == "Tokyo Metropolitan Government" and {"都", "metro"} <= tags
            continue
        assert m.name_en is not None and m.name_en.endswith(ENGLISH[m.name[-1]]), m
        assert m.name_en[0].isupper() and m.name_en.isascii(), m
        if where == "23区":
            assert tags == {"23区", "23ku"}, m
        elif where in TAMA:
            assert {"多摩", "tama", where} <= tags and tags.isdisjoint(set(TAMA) - {where}), m
        else:
            assert {"島しょ", "islands", where} <= tags, m
            assert tags.isdisjoint(set(ISLANDS) - {where}), m
    assert [m.name_en for m in tokyo.municipalities if m.code in ("131016", "132012")] == [
        "Chiyoda City",
        "Hachioji City",
    ]
    assert tokyo.municipality("133035").name_en == "Mizuho Town"
    assert tokyo.municipality("133078").name_en == "Hinohara Village"
    # selecting by tag: what an operator types
    sizes = {tag: len(tokyo.selected([tag])) for tag in ("23区", "多摩", "島しょ", *TAMA, *ISLANDS)}
    assert sizes == {
        "23区": 23,
        "多摩": 30,
        "島しょ": 9,
        "西多摩": 8,
        "南多摩": 5,
        "北多摩": 17,
        "大島支庁": 4,
        "三宅支庁": 2,
        "八丈支庁": 2,
        "小笠原支庁": 1,
    }
    assert tokyo.selected(["23ku"]) == tokyo.selected(["23区"])
    assert tokyo.selected(["islands"]) == tokyo.selected(["島しょ"])


def test_the_header_cites_its_sources(shipped: Path) -> None:
    header = shipped.read_text(encoding="utf-8").split("\nmunicipalities:", 1)[0]
    assert "総務省「全国地方公共団体コード」" in header
    assert "西多摩" in header and "大島支庁" in header and "東京都総務局" in header


def test_a_wrong_check_digit_is_refused_naming_the_line(shipped: Path) -> None:
    text = shipped.read_text(encoding="utf-8")
    bad = text.replace('code: "132209"', 'code: "132208"')  # 東大和市, last digit off by one
    with pytest.raises(RegistryError) as info:
        parse_registry(bad, "13.yaml")
    (problem,) = info.value.problems
    line = bad.splitlines().index('  - code: "132208"') + 1
    index = [code for code, _, _ in SOURCE].index("132209")
    assert (problem.line, problem.field) == (line, f"municipalities[{index}].code")
    assert "check digit of 132208 is wrong" in problem.why_en


def test_every_channel_is_a_commented_placeholder_that_fills_in(shipped: Path) -> None:
    """Uncommenting one example without filling it in is refused; filled in, it loads."""
    text = shipped.read_text(encoding="utf-8")
    assert text.count("    channels: []  # 未記入 / not filled in yet\n") == 63
    lines = text.splitlines()
    at = lines.index("    name: 八王子市") + 3
    assert lines[at].startswith("    channels: []")
    lines[at] = "    channels:"
    block = at + 1
    while lines[block].startswith("    #"):
        lines[block] = "    " + lines[block].removeprefix("    # ")
        block += 1
    opened = "\n".join(lines) + "\n"
    with pytest.raises(RegistryError) as info:
        parse_registry(opened, "13.yaml", check_secrets=False)
    fields = {p.field for p in info.value.problems}
    assert "municipalities[24].channels[0].smtp.host" in fields
    assert all("not filled in" in p.why_en for p in info.value.problems)
    fill = {
        "mail.smtp.host": "smtp.city.hachioji.example.lg.jp",
        "mail.from": "drill@city.hachioji.example.lg.jp",
        "mail.to": "bousai@city.hachioji.example.lg.jp",
        "mail.imap.host": "imap.city.hachioji.example.lg.jp",
        "mail.imap.user": "bousai",
    }
    filled = re.sub(r"<<([a-z_.]+)>>", lambda m: fill[m.group(1)], opened)
    reg = parse_registry(filled, "13.yaml", check_secrets=False)
    (channel,) = reg.municipality("132012").channels
    assert (channel.kind, channel.simulated) == ("mail", False)
    assert len(reg.unfilled()) == 62 and reg.unfilled(["南多摩"]) == reg.selected(
        ["町田市", "日野市", "多摩市", "稲城市"]
    )


def test_registry_init_writes_it_and_registry_check_accepts_it_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tokyo.yaml"
    assert main(["--lang", "en", "registry", "init", "--prefecture", "13", "-o", str(path)]) == 0
    written = path.read_text(encoding="utf-8")
    assert written == prefecture_registry("13")
    assert written.splitlines()[0] == "# yaml-language-server: $schema=registry.schema.json"
    assert (tmp_path / "registry.schema.json").is_file()  # what that line points at
    assert "channels: []" in capsys.readouterr().err
    data = yaml.safe_load(written)
    assert not list(jsonschema.Draft202012Validator(registry_schema()).iter_errors(data))

    assert main(["--lang", "en", "registry", "check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert f"{path}: OK" in out and "63 municipalities, 0 channels" in out
    assert "  134210 小笠原村: (channels not filled in yet)" in out
    assert "warning: 63 municipalities have no channels filled in yet" in err
    assert "Traceback" not in out + err
    assert main(["--lang", "ja", "registry", "check", str(path)]) == 0
    assert "警告: 63 団体のチャネルが未記入です" in capsys.readouterr().err

    # like every init: never overwrites without --force
    path.write_text("mine\n", encoding="utf-8")
    assert main(["--lang", "en", "registry", "init", "--prefecture", "13", "-o", str(path)]) == 2
    assert "--force" in capsys.readouterr().err and path.read_text(encoding="utf-8") == "mine\n"
    assert main(["registry", "init", "--prefecture", "013", "-o", str(path), "--force"]) == 0
    assert path.read_text(encoding="utf-8") == written


@pytest.mark.parametrize(
    ("args", "ja", "en"),
    [
        (["--prefecture", "27"], "都道府県番号 '27' のレジストリは同梱されていません（同梱: 13 東京都）",
         "no registry is shipped for prefecture '27' (shipped: 13 東京都)"),
        (["--prefecture", "tokyo"], "'tokyo'", "(shipped: 13 東京都)"),
        (["--prefecture", "13", "--kinds", "mail"], "どちらか一方", "not both"),
        ([], "どちらか一方", "give either --kinds"),
    ],
    ids=["not-shipped", "not-a-number", "both", "neither"],
)  # fmt: skip
def test_init_usage_errors_exit_2_in_both_languages(
    args: list[str], ja: str, en: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for lang, expected in (("ja", ja), ("en", en)):
        assert main(["--lang", lang, "registry", "init", *args]) == 2
        out, err = capsys.readouterr()
        assert expected in err and not out and "Traceback" not in err


def test_prefecture_numbers() -> None:
    assert available_prefectures() == {"13": "東京都"}
    assert [prefecture_number(x) for x in ("13", "013", "1", "47", "48", "0", "１３", "")] == [
        "13",
        "13",
        "01",
        "47",
        None,
        None,
        None,
        None,
    ]


SCENARIO = 'def test_x(drill):\n    drill.broadcast("参集してください")\n'


def _dry_run(cwd: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTEST_ADDOPTS", None)
    run = ["run", "s/test_x.py", "--registry", "tokyo.yaml", "--journal", "j.sqlite"]
    return subprocess.run(
        [sys.executable, "-m", "drills.cli", "--lang", "en", *run, "--dry-run", *extra],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_run_refuses_municipalities_not_filled_in(tmp_path: Path) -> None:
    """Exit 2 naming them; selecting the filled-in one drills it (a dry run: nothing sent)."""
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "test_x.py").write_text(SCENARIO, encoding="utf-8")
    one = prefecture_registry("13").replace(
        "    tags: [23区, 23ku]\n    channels: []",
        "    tags: [23区, 23ku]\n    channels: [{id: chat, kind: webhook, sim: {}}]",
        1,  # 千代田区, the first ward
    )
    (tmp_path / "tokyo.yaml").write_text(one, encoding="utf-8")
    refused = _dry_run(tmp_path, "--municipality", "23区")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert (
        "22 municipalities have no channels filled in yet and cannot be drilled: "
        "131024 中央区, 131032 港区" in refused.stdout
    )
    assert "Traceback" not in refused.stdout + refused.stderr
    chosen = _dry_run(tmp_path, "--municipality", "131016")
    assert chosen.returncode == 0, chosen.stdout + chosen.stderr
    assert "千代田区 (131016)" in chosen.stdout and "Nothing was sent" in chosen.stdout
