"""都・区市町村 連絡網の点呼訓練

想定: 大規模災害の発生直後、都の災害対策本部が「都区市町村連絡チャット」
（東京都の共有ルーム）で点呼を取る。各団体の当番はメッセージを受け取ったら
同じルームに「RE[トークン] 団体コード」と応答する。
10 秒以内に全団体が応答すること。応答しなかった団体を記録する。
"""

import pytest

pytestmark = [
    pytest.mark.scenario("都区市町村 点呼"),
    pytest.mark.disaster("地震"),
    pytest.mark.severity(4),
    pytest.mark.deadline("10s"),
]


def test_全団体が点呼に応答する(drill):
    """東京都の共有ルームで点呼し、10 秒以内に全団体が応答すること。"""
    call = drill.roll_call(
        "都災害対策本部より点呼です。各団体の当番は受信を確認し、応答してください。",
        room="東京都/chat",
        within="10s",
        # シミュレータでの応答の速さ（実チャネルでは使われません）
        simulated={"delay": {"dist": "lognormal", "median": "1.5s", "sigma": 0.5}},
    )
    call.expect(within="10s")
