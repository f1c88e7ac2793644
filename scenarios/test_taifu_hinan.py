"""台風・風水害 避難情報の伝達訓練

想定: 大型で非常に強い台風が関東に接近し、多摩川・浅川流域に氾濫のおそれ。
各団体は「高齢者等避難」を職員へ伝える。伝達はチャット → メール → SMS の
順に試し、4 秒以内に届いたことが確認できなければ次の手段へ切り替える。
どの手段であれ 15 秒以内に各団体へ届くこと。
続いて多摩地域へ「避難指示」を、チャットと SMS の両方で確実に届ける。
"""

import pytest

pytestmark = [
    pytest.mark.scenario("台風・風水害 避難情報の伝達"),
    pytest.mark.disaster("台風・風水害"),
    pytest.mark.severity(4),
    pytest.mark.deadline("15s"),
]


def test_高齢者等避難を伝える(drill):
    """チャット → メール → SMS の順に試し、15 秒以内にどれかで届くこと。"""
    step = drill.fallback(
        "【警戒レベル3】高齢者等避難を発令します。避難所の開設要員は配置についてください。",
        order=["chat", "mail", "sms"],
        within="15s",
        escalate_after="4s",
    )
    step.expect(within="15s")


def test_多摩地域へ避難指示を伝える(drill):
    """多摩・西多摩の団体へ、チャットと SMS の両方で 10 秒以内に届くこと。"""
    step = drill.broadcast(
        "【警戒レベル4】多摩川・浅川流域に避難指示を発令します。"
        "災害対策本部の要員は直ちに参集してください。",
        channels=["chat", "sms"],
        to=["tama", "nishitama"],
    )
    step.expect(reached="100%", within="10s")
