"""A loopback server speaking OpenAI's `/v1/completions` and `/v1/chat/completions`, answering from a
fake.json as ../shared/fixtures/lm-eval-cases/README.md defines it:

    {"answers": [{"match", "text", "sequence", "content_none", "reasoning", "finish_reason"}],
     "default": reply when nothing matches, "mode": {"max_stops": N, "apply_stops": bool}}

An answer matches when `match` is a substring of the prompt (completions) or of the last user message
(chat); the first matching answer is used. With a `sequence`, the nth request that answer serves gets the
nth reply (past the end, the last). More stop strings than `max_stops` is a 400 with OpenAI's error body;
unless `apply_stops` is false the text is cut at the first stop string (finish_reason "stop"). A
completions `prompt` may be a list: one choice per prompt, with its `index`. Every request body is kept
in `bodies` and every prompt counted in `requests`.
"""
from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from services import LoopbackHTTP


class CannedOpenAI(LoopbackHTTP):
    def __init__(self, *fakes: dict | str | Path):
        docs = [json.loads(Path(f).read_text()) if isinstance(f, (str, Path)) else f for f in fakes]
        self.answers = [a for d in docs for a in d.get("answers", [])]
        self.default = next((d["default"] for d in docs if "default" in d), "")
        self.mode = {k: v for d in docs for k, v in (d.get("mode") or {}).items()}
        self.bodies: list[dict] = []
        self.requests: Counter = Counter()  # prompt (or last user message) -> requests received
        self._served: Counter = Counter()  # answer index -> replies given
        self._lock = threading.Lock()
        super().__init__(self._handler(), "/v1")

    def requests_matching(self, text: str) -> int:
        return sum(n for prompt, n in self.requests.items() if text in prompt)

    def _reply(self, prompt: str) -> dict:
        """The answer entry for a prompt with this request's text (advancing its sequence)."""
        for i, a in enumerate(self.answers):
            if a["match"] in prompt:
                n = self._served[i]
                self._served[i] += 1
                if "sequence" in a:
                    seq = a["sequence"]
                    return {**a, "text": seq[min(n, len(seq) - 1)]}
                return a
        return {"text": self.default}

    def _cut(self, text: str | None, finish: str, stop) -> tuple[str | None, str]:
        stops = [stop] if isinstance(stop, str) else (stop or [])
        if text is None or not self.mode.get("apply_stops", True):
            return text, finish
        hits = [text.find(s) for s in stops if s and s in text]
        return (text[:min(hits)], "stop") if hits else (text, finish)

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self._json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                chat = self.path.rstrip("/").endswith("/chat/completions")
                if not chat and not self.path.rstrip("/").endswith("/completions"):
                    return self._json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
                if chat:
                    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
                    content = users[-1]["content"] if users else ""
                    prompts = [content if isinstance(content, str) else
                               "".join(p.get("text", "") for p in content)]
                else:
                    prompt = body.get("prompt", "")
                    prompts = prompt if isinstance(prompt, list) else [prompt]
                stop = body.get("stop")
                with fake._lock:
                    fake.bodies.append(body)
                    for p in prompts:
                        fake.requests[p] += 1
                    n_stops = len([stop] if isinstance(stop, str) else (stop or []))
                    if "max_stops" in fake.mode and n_stops > fake.mode["max_stops"]:
                        return self._json(400, {"error": {
                            "message": f"'stop' accepts at most {fake.mode['max_stops']} sequences, got {n_stops}",
                            "type": "invalid_request_error", "param": "stop", "code": None}})
                    replies = [fake._reply(p) for p in prompts]
                choices = []
                for i, a in enumerate(replies):
                    text = None if a.get("content_none") else a.get("text", "")
                    text, finish = fake._cut(text, a.get("finish_reason", "stop"), stop)
                    if chat:
                        message = {"role": "assistant", "content": text}
                        if "reasoning" in a:
                            message["reasoning_content"] = a["reasoning"]
                        choices.append({"index": i, "message": message, "finish_reason": finish,
                                        "logprobs": None})
                    else:
                        choices.append({"index": i, "text": text, "finish_reason": finish, "logprobs": None})
                prompt_tokens = sum(len(p.split()) for p in prompts)
                completion_tokens = sum(len((c.get("text") or (c.get("message") or {}).get("content") or "").split())
                                        for c in choices)
                self._json(200, {"id": "canned", "object": "chat.completion" if chat else "text_completion",
                                 "created": 0, "model": body.get("model", "fake"), "choices": choices,
                                 "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                           "total_tokens": prompt_tokens + completion_tokens}})

            def _json(self, status, doc):
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
