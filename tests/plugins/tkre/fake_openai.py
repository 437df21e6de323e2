"""A small OpenAI-compatible chat-completions server on 127.0.0.1 for the HTTP backend's tests.

Its behaviour is chosen per request by the ``model`` field:
``echo`` answers with the prompt's last line; ``error-400`` and ``error-503``
answer with that status; ``flaky`` answers 503 to the first request of each
prompt and then normally; ``slow`` waits ``slow_s`` before answering;
``malformed`` answers a body that is not JSON; ``no-choices`` a JSON object
without choices; ``re-llm`` plays a knowledge-generating LLM: it explains
an explanation prompt by restating its subject, relation and object, and
answers a synthetic-data prompt with its demonstrations reworded (valid),
one with another relation and one chatty line (both to be rejected). ``fail_after`` makes every request after the first N
answer 500 (a provider going down mid-generation).
"""
from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def scripted(prompt: str) -> str:
    if "Here are some samples for relation" in prompt:
        demos = [line for line in prompt.splitlines() if line.startswith("Relation:")]
        out = ["Here are more samples:"]
        out += [f"{i + 1}. " + d.replace("Context: ", "Context: Reportedly , ", 1) for i, d in enumerate(demos)]
        out.append(demos[0].replace("Relation: ", "Relation: not_", 1))
        return "\n".join(out)
    m = re.search(r'subject "(.*?)" has the relation "(.*?)" with the object "(.*?)"', prompt)
    if m is None:
        return "I cannot explain that."
    head, rel, tail = m.groups()
    return f"The sentence says that {head} and {tail} are linked : {head} stands in {rel} to {tail} ."


class FakeOpenAI:
    def __init__(self, slow_s: float = 2.0) -> None:
        self.slow_s = slow_s
        self.requests: list[dict] = []
        self.prompts: Counter = Counter()
        #: prompts answered with a 200 and a completion
        self.answered: Counter = Counter()
        self.auth: list[str | None] = []
        self.fail_after: int | None = None
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.requests.append(body)
                    outer.auth.append(self.headers.get("Authorization"))
                    n = len(outer.requests)
                    prompt = body["messages"][-1]["content"]
                    outer.prompts[prompt] += 1
                    seen = outer.prompts[prompt]
                if self.path != "/v1/chat/completions":
                    return self._send(404, b'{"error": "not found"}')
                model = body["model"]
                if outer.fail_after is not None and n > outer.fail_after:
                    return self._send(500, b'{"error": "down"}')
                if model == "error-400":
                    return self._send(400, b'{"error": {"message": "bad request"}}')
                if model == "error-503" or (model == "flaky" and seen == 1):
                    return self._send(503, b'{"error": "busy"}')
                if model == "slow":
                    time.sleep(outer.slow_s)
                if model == "malformed":
                    return self._send(200, b"<html>not json")
                if model == "no-choices":
                    return self._send(200, b'{"id": "x", "object": "chat.completion"}')
                with outer.lock:
                    outer.answered[prompt] += 1
                answer = scripted(prompt) if model == "re-llm" else "ANSWER: " + prompt.splitlines()[-1]
                payload = {"id": f"c{n}", "object": "chat.completion", "model": model,
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": answer}}]}
                self._send(200, json.dumps(payload).encode())

            def _send(self, status, data):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
