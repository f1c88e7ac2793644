"""首都直下地震 初動参集訓練

想定: 平日 18 時、都心南部直下を震源とする M7.3 の地震（最大震度 6 強）。
全職員へ「安否報告と参集」の指示を、庁内チャット・職員メール・緊急 SMS の
すべてで一斉に送り、各団体で 10 秒以内に 95 % 以上へ届くことを確かめる。
続いて都から 23 区の防災担当へ、SMS で第一報が 5 秒以内に届くことを確かめる。
"""

import pytest

pytestmark = [
    pytest.mark.scenario("首都直下地震 初動参集"),
    pytest.mark.disaster("地震"),
    pytest.mark.severity(5),
    pytest.mark.deadline("10s"),
]


def test_全職員へ参集を指示する(drill):
    """チャット・メール・SMS で一斉に送り、各団体で 10 秒以内に 95 % 以上へ届くこと。"""
    step = drill.broadcast(
        "首都直下地震（最大震度6強）が発生しました。"
        "全職員は安否を報告し、直ちに所属へ参集してください。",
        channels=["chat", "mail", "sms"],
        subject="初動参集指示",
    )
    step.expect(reached="95%", within="10s")


def test_23区の防災担当へSMSで第一報(drill):
    """23 区へ SMS で第一報を送り、5 秒以内に全員へ届くこと。"""
    step = drill.broadcast(
        "都災害対策本部を設置しました。各区は被害状況の第一報を報告してください。",
        channels="sms",
        to="23ku",
    )
    step.expect(reached="100%", within="5s")
