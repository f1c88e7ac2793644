"""テレワーク・時間外の到達確認

想定: 休日の夜間に発災。庁内チャット（LGWAN 内）は自宅から見られない職員が多い。
庁外でも受け取れる職員メールと緊急 SMS で、在宅・外出中の職員に連絡が
つくかを確かめる。

同じシナリオを場所を変えて実行し、結果を並べて比べる:
    tsunagari run scenarios/test_telework.py --vantage 庁内LAN
    tsunagari run scenarios/test_telework.py --vantage テレワーク
    tsunagari run scenarios/test_telework.py --vantage モバイル
（--out に vantages.json が出力されます）
"""

import pytest

pytestmark = [
    pytest.mark.scenario("テレワーク・時間外の到達確認"),
    pytest.mark.disaster("地震"),
    pytest.mark.severity(3),
    pytest.mark.deadline("10s"),
]


def test_メールとSMSで在宅職員へ届く(drill):
    """メールと SMS で送り、各団体で 10 秒以内に 95 % 以上へ届くこと。"""
    step = drill.broadcast(
        "時間外の連絡訓練です。この連絡を受け取ったことを確認してください。",
        channels=["mail", "sms"],
        subject="時間外連絡訓練",
    )
    step.expect(reached="95%", within="10s")


def test_SMSだけでも届く(drill):
    """メールが見られない場合に備え、SMS だけで 5 秒以内に全員へ届くこと。"""
    step = drill.broadcast("時間外の連絡訓練です（SMS）。", channels="sms")
    step.expect(reached="100%", within="5s")
