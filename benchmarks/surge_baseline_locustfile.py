"""The peer of ``tsunagari surge`` in benchmarks/bench_surge.py: a plain Locust FastHttpUser.

What a Locust user would write by hand to hammer a chat webhook: one JSON POST
per task, no pacing, no per-step names, a constant marked body.
"""

from locust import FastHttpUser, constant, task

# The same marked message the surge sends (drills.surge.runner.LOAD_TEXT), token fixed.
BODY = {
    "text": "【訓練】 サージ訓練の負荷メッセージです（返信不要） / "
    "surge drill load message (no reply needed)\n[TSG-0000000000AB]"
}
HEADERS = {"Authorization": "Bearer bench-token"}


class PlainWebhookUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def post(self) -> None:
        self.client.post("/hooks/bench", json=BODY, headers=HEADERS)
