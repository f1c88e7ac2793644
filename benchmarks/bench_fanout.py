"""Fan-out under the synchronous operator API: 62 municipalities × 3 channels, 2 s latency.

Every Tokyo municipality (23 wards, 26 cities, 13 towns and villages) gets
three simulated channels (chat, mail, sms; the real mail/twilio simulators
when those kinds are installed, otherwise webhook stand-ins), each with 2 s of
injected far-end latency (the simulators in a process of their own:
:class:`drills.core.simulators.ProcessSimulatorPool`). Side by side, alternating,
in one harness process:

- ``single``: ``drill.broadcast(...)`` to ONE municipality × ONE channel — the
  slowest single delivery on its own (the baseline)
- ``fanout``: ``drill.broadcast(...)`` to all 62 × 3 = 186 channels

through :func:`drills.operator.scenario.open_drill` — the same synchronous facade a
scenario's ``drill`` fixture is. If steps ran their deliveries one after the
other the fan-out would take ~186 × 2 s; concurrent, it should take about as
long as its slowest delivery. Target (issue 6): fanout / single ≤ 1.3.

    python benchmarks/bench_fanout.py [--rounds 3] [--latency 2.0]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# 全国地方公共団体コード (first five digits) of Tokyo's 62 municipalities.
TOKYO = [
    ("13101", "千代田区"),
    ("13102", "中央区"),
    ("13103", "港区"),
    ("13104", "新宿区"),
    ("13105", "文京区"),
    ("13106", "台東区"),
    ("13107", "墨田区"),
    ("13108", "江東区"),
    ("13109", "品川区"),
    ("13110", "目黒区"),
    ("13111", "大田区"),
    ("13112", "世田谷区"),
    ("13113", "渋谷区"),
    ("13114", "中野区"),
    ("13115", "杉並区"),
    ("13116", "豊島区"),
    ("13117", "北区"),
    ("13118", "荒川区"),
    ("13119", "板橋区"),
    ("13120", "練馬区"),
    ("13121", "足立区"),
    ("13122", "葛飾区"),
    ("13123", "江戸川区"),
    ("13201", "八王子市"),
    ("13202", "立川市"),
    ("13203", "武蔵野市"),
    ("13204", "三鷹市"),
    ("13205", "青梅市"),
    ("13206", "府中市"),
    ("13207", "昭島市"),
    ("13208", "調布市"),
    ("13209", "町田市"),
    ("13210", "小金井市"),
    ("13211", "小平市"),
    ("13212", "日野市"),
    ("13213", "東村山市"),
    ("13214", "国分寺市"),
    ("13215", "国立市"),
    ("13218", "福生市"),
    ("13219", "狛江市"),
    ("13220", "東大和市"),
    ("13221", "清瀬市"),
    ("13222", "東久留米市"),
    ("13223", "武蔵村山市"),
    ("13224", "多摩市"),
    ("13225", "稲城市"),
    ("13227", "羽村市"),
    ("13228", "あきる野市"),
    ("13229", "西東京市"),
    ("13303", "瑞穂町"),
    ("13305", "日の出町"),
    ("13307", "檜原村"),
    ("13308", "奥多摩町"),
    ("13361", "大島町"),
    ("13362", "利島村"),
    ("13363", "新島村"),
    ("13364", "神津島村"),
    ("13381", "三宅村"),
    ("13382", "御蔵島村"),
    ("13401", "八丈町"),
    ("13402", "青ヶ島村"),
    ("13421", "小笠原村"),
]


def with_check_digit(five: str) -> str:
    total = sum(int(d) * w for d, w in zip(five, (6, 5, 4, 3, 2), strict=True))
    return five + str((11 - total % 11) % 10)


def registry_text(latency: float) -> tuple[str, dict[str, str]]:
    from drills.core.registry import load_kind

    def usable(kind: str) -> bool:
        try:
            load_kind(kind)
        except Exception:
            return False
        return True

    kinds = {
        "chat": "webhook",
        "mail": "mail" if usable("mail") else "webhook",
        "sms": "twilio" if usable("twilio") else "webhook",
    }
    lines = ["municipalities:"]
    for i, (five, name) in enumerate(TOKYO):
        code = with_check_digit(five)
        extra = {
            "mail": f", to: drill{i}@example.lg.jp" if kinds["mail"] == "mail" else "",
            "sms": f', to: ["+81901112{i:04d}"]' if kinds["sms"] == "twilio" else "",
            "chat": "",
        }
        chans = ", ".join(
            f"{{id: {cid}, kind: {kind}{extra[cid]}, sim: {{latency: {latency}s}}}}"
            for cid, kind in kinds.items()
        )
        lines.append(f'  - {{code: "{code}", name: {name}, channels: [{chans}]}}')
    return "\n".join(lines) + "\n", kinds


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--latency", type=float, default=2.0)
    ap.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="how long a step waits for its deliveries (default: 5 × latency); it bounds the "
        "wait, it is not what is measured",
    )
    opts = ap.parse_args()

    from drills.core.simulators import ProcessSimulatorPool
    from drills.operator.scenario import open_drill

    text, kinds = registry_text(opts.latency)
    work = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    reg = work / "registry.yaml"
    reg.write_text(text, encoding="utf-8")
    timeout = opts.timeout if opts.timeout is not None else opts.latency * 5
    single_s: list[float] = []
    fanout_s: list[float] = []
    slowest_s: list[float] = []
    sums_s: list[float] = []
    cold: dict[str, float] = {}
    with open_drill(str(reg), str(work / "journal.sqlite"), scenario="bench", seed=1) as drill:
        # the simulators in a process of their own: their CPU is not the harness's
        drill.ctx.drill.sims = ProcessSimulatorPool(1)
        for label, kw in (("single", {"to": "足立区", "channels": "chat"}), ("fanout", {})):
            started = time.perf_counter()
            drill.broadcast("warm-up", timeout=timeout, **kw)  # opens probes, starts simulators
            cold[label] = time.perf_counter() - started
        for _ in range(opts.rounds):
            started = time.perf_counter()
            one = drill.broadcast("単独", to="足立区", channels="chat", timeout=timeout)
            single_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            step = drill.broadcast("一斉", timeout=timeout)
            fanout_s.append(time.perf_counter() - started)
            lat = [d.latency_s for d in step.deliveries if d.latency_s is not None]
            unseen = sorted({d.kind for d in step.deliveries if d.latency_s is None})
            assert len(step.deliveries) == 186 and len(lat) == 186, (
                step.result.by_outcome(),
                f"not seen within {timeout:g} s: {unseen}",
            )
            assert one.deliveries[0].outcome.reached
            slowest_s.append(max(lat))
            sums_s.append(sum(lat))
    single, fanout = statistics.median(single_s), statistics.median(fanout_s)
    slowest = statistics.median(slowest_s)
    result = {
        "channels": 186,
        "kinds": kinds,
        "latency_s": opts.latency,
        "rounds": opts.rounds,
        "single_step_s": [round(x, 4) for x in single_s],
        "fanout_step_s": [round(x, 4) for x in fanout_s],
        "slowest_delivery_in_fanout_s": [round(x, 4) for x in slowest_s],
        "sum_of_latencies_s": [round(x, 2) for x in sums_s],
        "cold_first_step_s": {k: round(v, 4) for k, v in cold.items()},
        "ratio_fanout_vs_single": round(fanout / single, 4),
        "ratio_fanout_vs_slowest_delivery": round(fanout / slowest, 4),
        "target_ratio": 1.3,
    }
    result["target_met"] = result["ratio_fanout_vs_single"] <= 1.3
    print(
        f"fan-out: 62 municipalities × 3 channels ({', '.join(f'{k}={v}' for k, v in kinds.items())}), "
        f"{opts.latency:g} s injected latency, {opts.rounds} rounds (median)"
    )
    print(f"  {'step':<34}{'wall s':>10}")
    print(f"  {'single (1 × 1), the baseline':<34}{single:>10.3f}")
    print(f"  {'fan-out (62 × 3)':<34}{fanout:>10.3f}")
    print(f"  {'slowest delivery inside fan-out':<34}{slowest:>10.3f}")
    print(f"  {'sum of the 186 latencies':<34}{statistics.median(sums_s):>10.1f}")
    print(
        f"  ratio fan-out / single            {result['ratio_fanout_vs_single']:.3f}  (target ≤ 1.3)"
    )
    print(f"  ratio fan-out / slowest delivery  {result['ratio_fanout_vs_slowest_delivery']:.3f}")
    print(f"  first (cold) steps: single {cold['single']:.3f} s, fan-out {cold['fanout']:.3f} s")
    from benchlib import results_dir  # the results folder ($TSUNAGARI_BENCH_RESULTS)

    out = results_dir()
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_fanout.json").write_text(
        json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )


if __name__ == "__main__":
    main()
