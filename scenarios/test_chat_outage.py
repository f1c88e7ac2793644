"""庁内チャット障害時の代替連絡訓練

想定: 庁内チャットのサービスが停止した（クラウド障害・回線断）。
チャットが使えないまま、メール・SMS への切り替えで 15 秒以内に
全団体へ連絡がつくことを確かめる（チャットは 5 秒で見切る）。
シミュレータのチャネルは停止させ、実チャネルは送信対象から外して試す。
"""

import pytest

pytestmark = [
    pytest.mark.scenario("チャット障害時の代替連絡"),
    pytest.mark.disaster("通信障害"),
    pytest.mark.severity(3),
    pytest.mark.deadline("15s"),
]


def test_チャット停止中もメールかSMSで届く(drill):
    """チャットを止めた状態で、メール → SMS への切り替えにより 15 秒以内に届くこと。"""
    with drill.outage("chat"):
        step = drill.fallback(
            "庁内チャットが停止しています。以降の連絡はメールと SMS で行います。",
            order=["chat", "mail", "sms"],
            within="15s",
            escalate_after="5s",
        )
    step.expect(within="15s")
    # チャットは止めてあるので、チャットで届いた団体はないはず
    assert step.reached_via().get("chat", 0) == 0
