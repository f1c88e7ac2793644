"""A synthetic drill of 13 Tokyo wards for the comparison among participants.

12 are scored (two pairs tie on score, one pair on latency; one's chat never
arrives), one is untested (harness errors only); 10 have mail, 3 have SMS (too
few to compare by SMS).
Fixed times; used by the report goldens and the metrics test.
"""

from __future__ import annotations

from datetime import datetime

from drills.core.journal import Journal
from drills.reporting.scorecard import TOKYO
from tests.scorecard.scorecard_samples import Ch, lat, write_run

START = datetime(2026, 12, 2, 10, 0, tzinfo=TOKYO).timestamp()

# code, name, chat (delivered, lost, base latency), mail (base latency, step) or None:
# ten mail arrivals each, base + i × step (so p50 and p95 rank differently)
WARDS = [
    ("131016", "千代田区", (10, 0, 0.20), (0.30, 0.01)),
    ("131024", "中央区", (10, 0, 0.25), (0.35, 0.002)),
    ("131032", "港区", (9, 1, 0.30), (0.40, 0.03)),
    ("131041", "新宿区", (10, 0, 0.20), (0.30, 0.01)),  # chat, mail as 千代田区: latency ties
    ("131059", "文京区", (8, 2, 0.40), (0.50, 0.005)),
    ("131067", "台東区", (10, 0, 0.50), None),
    ("131075", "墨田区", (6, 4, 0.60), (0.70, 0.001)),
    ("131083", "江東区", (10, 0, 0.35), (0.45, 0.04)),
    ("131091", "品川区", (10, 0, 0.45), None),
    ("131105", "目黒区", (0, 10, 0.0), (0.90, 0.01)),  # chat never arrived: no chat latency
    ("131113", "大田区", (9, 1, 0.55), (0.60, 0.002)),
    ("131121", "世田谷区", (7, 3, 0.65), (0.80, 0.02)),
]


def fill_standing_drill(journal: Journal) -> str:
    channels = []
    for code, name, (ok, lost, base), mail in WARDS:
        channels.append(Ch(code, name, "chat", "webhook", delivered=lat(base, ok), lost=lost))
        if mail is not None:
            base, step = mail
            channels.append(Ch(code, name, "mail", "mail", delivered=lat(base, 10, step)))
    for code, name in (("131016", "千代田区"), ("131024", "中央区"), ("131032", "港区")):
        channels.append(Ch(code, name, "sms", "twilio", receipt=lat(2.0, 5)))
    channels.append(Ch("131130", "渋谷区", "chat", "webhook", error=5))  # untested
    return write_run(journal, "20261202T010000-cmp001", START, channels, scenario="区部 一斉訓練")
