"""A loopback server speaking the OpenAI completions protocol that misbehaves on cue, to test retries.

Cues in the prompt: R429 (first attempt 429), R503 (first attempt 503), SLOW (first attempt answers too
late), DROP (first attempt closes the connection), EMPTY (first attempt returns ""), FAIL (always 500).
Any prompt listed in `fail_prompts` always gets a 500 as well. `reply(prompt)`, when given, writes the
answer text instead (a judge's verdicts); every request body is kept in `bodies`.
"""
from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler

from services import LoopbackHTTP


class FlakyOpenAI(LoopbackHTTP):
    def __init__(self, slow_seconds: float = 2.5, delay: float = 0.0, reply=None):
        self.attempts: Counter = Counter()
        self.reply, self.bodies = reply, []
        self.fail_prompts: set[str] = set()
        self.headers: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.slow_seconds, self.delay = slow_seconds, delay
        self._lock = threading.Lock()
        super().__init__(self._handler(), "/v1")

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body.get("prompt") or body["messages"][-1]["content"]
                if not isinstance(prompt, str):  # token ids
                    prompt = json.dumps(prompt)
                with fake._lock:
                    fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                    fake.bodies.append(body)
                    fake.attempts[prompt] += 1
                    n = fake.attempts[prompt]
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    self._answer(body, prompt, n)
                finally:
                    with fake._lock:
                        fake.in_flight -= 1

            def _answer(self, body, prompt, n):
                time.sleep(fake.delay)
                if "FAIL" in prompt or prompt in fake.fail_prompts:
                    return self._error(500, "boom")
                if n == 1:
                    if "R429" in prompt:
                        return self._error(429, "slow down", {"retry-after-ms": "10"})
                    if "R503" in prompt:
                        return self._error(503, "unavailable")
                    if "SLOW" in prompt:
                        time.sleep(fake.slow_seconds)
                    if "DROP" in prompt:
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                text = "" if ("EMPTY" in prompt and n == 1) else f"answer {n}"
                if fake.reply is not None:
                    text = fake.reply(prompt)
                if "messages" in body:
                    choice = {"index": 0, "finish_reason": "stop",
                              "message": {"role": "assistant", "content": text}}
                    obj = "chat.completion"
                else:
                    choice = {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}
                    obj = "text_completion"
                self._json(200, {"id": "x", "object": obj, "created": 0, "model": body["model"],
                                 "choices": [choice],
                                 "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})

            def _error(self, status, message, headers=None):
                self._json(status, {"error": {"message": message, "type": "server_error", "code": status}},
                           headers)

            def _json(self, status, doc, headers=None):
                data = json.dumps(doc).encode()
                try:
                    self.send_response(status)
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout): that is the point of SLOW

        return Handler
