"""A stand-in Ollama server for tests: pytest-httpserver answering Ollama's documented REST API
(https://github.com/ollama/ollama/blob/main/docs/api.md), the way the official `ollama` Python
client tests itself. No Ollama server can be installed on the CI machines.

Endpoints: GET /api/tags, POST /api/show, POST /api/chat (NDJSON pieces, or one body with
`stream: false`), POST /api/pull (NDJSON progress). Tests change its behaviour (models present,
delay, an error status) and read what the client sent (`chats`).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

VISION = ("completion", "vision")
TEXT = ("completion",)
CREATED_AT = "2026-11-23T10:00:00.000000Z"


@dataclass
class OllamaBehaviour:
    models: dict[str, tuple[str, ...]] = field(default_factory=dict)  # tag -> capabilities
    delay_s: float = 0.0  # before answering /api/chat
    chat_status: int = 200  # anything else: Ollama's error body with this status
    answer: str = "a stand-in answer from ollama"


class OllamaStub:
    def __init__(self, models: dict[str, tuple[str, ...]] | None = None) -> None:
        self.server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
        self.default_models = dict(models or {"qwen2.5vl:7b": VISION})
        self.behaviour = OllamaBehaviour(models=dict(self.default_models))
        self._lock = threading.Lock()
        self._chats: list[dict[str, Any]] = []
        self._install_handlers()

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self.server.start()
        self.port = self.server.port

    def stop(self) -> None:
        if self.server.is_running():
            self.server.stop()

    def restart(self) -> None:
        """Start again on the same port (after `stop`, to simulate Ollama going down and back)."""
        self.server.port = self.port
        self.server.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        self.behaviour = OllamaBehaviour(models=dict(self.default_models))
        with self._lock:
            self._chats.clear()

    @property
    def chats(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._chats)

    # --- the API ---------------------------------------------------------------------------
    def _install_handlers(self) -> None:
        self.server.expect_request("/api/tags", method="GET").respond_with_handler(self._tags)
        self.server.expect_request("/api/show", method="POST").respond_with_handler(self._show)
        self.server.expect_request("/api/chat", method="POST").respond_with_handler(self._chat)
        self.server.expect_request("/api/pull", method="POST").respond_with_handler(self._pull)

    def _tags(self, request: Request) -> Response:
        models = [
            {
                "name": tag,
                "model": tag,
                "modified_at": CREATED_AT,
                "size": 6_000_000_000,
                "digest": f"sha256:{abs(hash(tag)):064x}"[:71],
                "details": {"format": "gguf", "family": tag.split(":")[0]},
            }
            for tag in self.behaviour.models
        ]
        return _json({"models": models})

    def _show(self, request: Request) -> Response:
        tag = json.loads(request.data)["model"]
        capabilities = self.behaviour.models.get(tag)
        if capabilities is None:
            return _json({"error": f"model '{tag}' not found"}, 404)
        return _json(
            {
                "modelfile": f"FROM {tag}",
                "parameters": "",
                "template": "{{ .Prompt }}",
                "details": {"format": "gguf"},
                "model_info": {},
                "capabilities": list(capabilities),
            }
        )

    def _chat(self, request: Request) -> Response:
        body = json.loads(request.data)
        with self._lock:
            self._chats.append(body)
        behaviour = self.behaviour
        if behaviour.delay_s:
            time.sleep(behaviour.delay_s)
        tag = body.get("model", "")
        if tag not in behaviour.models:
            return _json({"error": f'model "{tag}" not found, try pulling it first'}, 404)
        if behaviour.chat_status != 200:
            return _json({"error": "stand-in failure"}, behaviour.chat_status)
        images = [i for m in body["messages"] for i in m.get("images") or []]
        content = behaviour.answer
        if body.get("format") is not None:
            content = json.dumps({"answer": behaviour.answer})
        final = {
            "model": tag,
            "created_at": CREATED_AT,
            "message": {"role": "assistant", "content": ""},
            "done_reason": "stop",
            "done": True,
            "total_duration": 1_000_000,
            "prompt_eval_count": prompt_eval_count(body["messages"], images),
            "eval_count": 7,
        }
        if body.get("stream") is False:
            final["message"]["content"] = content
            return _json(final)
        # Ollama streams by default: one NDJSON line per piece, then the counts.
        pieces = [content[i : i + 5] for i in range(0, len(content), 5)]
        lines = [
            {
                "model": tag,
                "created_at": CREATED_AT,
                "message": {"role": "assistant", "content": piece},
                "done": False,
            }
            for piece in pieces
        ]
        lines.append(final)
        ndjson = "".join(json.dumps(line) + "\n" for line in lines)
        return Response(ndjson, status=200, content_type="application/x-ndjson")

    def _pull(self, request: Request) -> Response:
        tag = json.loads(request.data)["model"]
        total = 4_000_000
        lines = [{"status": "pulling manifest"}]
        lines += [
            {"status": "pulling 1a2b3c", "digest": "sha256:1a2b3c", "total": total, "completed": c}
            for c in (0, total // 2, total)
        ]
        lines += [{"status": "verifying sha256 digest"}, {"status": "success"}]
        self.behaviour.models.setdefault(tag, VISION)
        ndjson = "".join(json.dumps(line) + "\n" for line in lines)
        return Response(ndjson, status=200, content_type="application/x-ndjson")


def prompt_eval_count(messages: list[dict[str, Any]], images: list[Any]) -> int:
    """Like Ollama's prompt_eval_count: the template's few tokens, the text (about four
    characters a token, as the Qwen tokenizer on English), and each image's patches."""
    text = sum(len(str(m.get("content") or "")) for m in messages)
    return 10 + -(-text // 4) + 100 * len(images)


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


def decode_images(chat: dict[str, Any]) -> list[np.ndarray]:
    """The images of a recorded chat request, decoded (RGB)."""
    images = []
    for encoded in [i for m in chat["messages"] for i in m.get("images") or []]:
        data = np.frombuffer(base64.b64decode(encoded), np.uint8)
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError("an image sent to Ollama is not a decodable JPEG")
        images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return images
