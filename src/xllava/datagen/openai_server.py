"""A small OpenAI-compatible chat server with seeded fault injection: a test double for any client.

The embedded world's teacher and judge are responders; any other code can plug its own
(an evaluation judge, a canned answer) into the same server and get the same faults:

    from xllava.datagen.openai_server import ChatRequest, FaultConfig, Reply, ResponderError, create_app, ServerThread

    def judge(request: ChatRequest) -> Reply | str:      # may also be `async def`
        prompt = request.text()                            # every text part of every message, joined
        images = request.images()                          # decoded data-URL images (bytes)
        if "[Question]" not in prompt:
            raise ResponderError(400, "not a judge prompt")   # -> HTTP 400 with an OpenAI error body
        return Reply("8 7\\nBoth answers are ...", prompt_tokens=120, completion_tokens=12)  # or just a str

    app = create_app(judge, FaultConfig(latency_s=0.05, rate_429=0.1, rate_500=0.05, rate_malformed=0.05,
                                        rate_timeout=0.02, hang_s=5, retry_after_s=0.1, seed=0),
                     model_ids=("judge-model",))
    with ServerThread(app) as server:                      # loopback, a free port, started and ready
        client = openai.OpenAI(base_url=server.base_url, api_key="unused")
        ...
        server.stats.faults                                # Counter: "429", "500", "malformed", "timeout", "ok"
        server.stats.arrivals                              # body sha256 -> [(monotonic time, fault), ...]

`ServerProcess([...command..., ])` runs a server command in a child process instead (its own core; the
command must accept `--fd N`, as `xllava datagen teacher` does); `serve_forever(app, fd=N)` is the
child's side.

Endpoints: `POST /v1/chat/completions` (the body as OpenAI defines it; `ChatRequest.body` holds all
of it, `ChatRequest.response_format` the structured-output request) and `GET /v1/models`.

Faults are drawn per request from a generator seeded by (seed, sha256 of the request body, how often
that body arrived before), so a run is reproducible whatever the order of concurrent requests, and a
retry of the same body draws afresh. The bands of one uniform draw, in order: 429 with Retry-After
(`retry-after-ms` and `retry-after` headers), 500, malformed (the responder's content cut in half:
still HTTP 200, not parseable JSON), timeout (the server sleeps `hang_s` before answering, so the
client's timeout fires first). `latency_s` is added to every request; `reject_json_schema` answers
a `json_schema` response_format with 400, as endpoints without structured output do.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import inspect
import json
import math
import random
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response


@dataclass
class ChatRequest:
    body: dict
    headers: dict[str, str]

    @property
    def model(self) -> str:
        return str(self.body.get("model", ""))

    @property
    def messages(self) -> list[dict]:
        return list(self.body.get("messages") or [])

    @property
    def response_format(self) -> dict | None:
        return self.body.get("response_format")

    def _parts(self) -> list[dict]:
        parts = []
        for m in self.messages:
            content = m.get("content")
            parts += content if isinstance(content, list) else [{"type": "text", "text": content or ""}]
        return parts

    def text(self) -> str:
        return "\n".join(p.get("text", "") for p in self._parts() if p.get("type") == "text")

    def images(self) -> list[bytes]:
        out = []
        for p in self._parts():
            url = (p.get("image_url") or {}).get("url", "") if p.get("type") == "image_url" else ""
            if url.startswith("data:") and "," in url:
                out.append(base64.b64decode(url.split(",", 1)[1]))
        return out


@dataclass
class Reply:
    content: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class ResponderError(Exception):
    def __init__(self, status_code: int, message: str):
        super().__init__(message)
        self.status_code, self.message = status_code, message


Responder = Callable[[ChatRequest], "Reply | str | Awaitable[Reply | str]"]


@dataclass
class FaultConfig:
    latency_s: float = 0.0
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_malformed: float = 0.0
    rate_timeout: float = 0.0
    retry_after_s: float = 1.0
    hang_s: float = 30.0
    seed: int = 0
    reject_json_schema: bool = False

    def draw(self, digest: str, occurrence: int) -> str:
        u = random.Random(f"{self.seed}/{digest}/{occurrence}").random()
        for name, rate in (("429", self.rate_429), ("500", self.rate_500),
                           ("malformed", self.rate_malformed), ("timeout", self.rate_timeout)):
            if u < rate:
                return name
            u -= rate
        return "ok"


@dataclass
class ServerStats:
    faults: Counter[str] = field(default_factory=Counter)
    seen: Counter[str] = field(default_factory=Counter)  # request body digest -> arrivals
    arrivals: dict[str, list[tuple[float, str]]] = field(default_factory=dict)  # digest -> (time, fault)


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return Response(json.dumps(body), status_code=status, media_type="application/json", headers=headers)


def _completion(model: str, reply: Reply, request: ChatRequest) -> dict:
    prompt_tokens = reply.prompt_tokens
    if prompt_tokens is None:  # a rough count, so that clients have usage to add up
        prompt_tokens = len(request.text()) // 4 + 85 * len(request.images())
    completion_tokens = reply.completion_tokens if reply.completion_tokens is not None else len(reply.content) // 4
    return {
        "id": f"chatcmpl-{hashlib.sha1(reply.content.encode()).hexdigest()[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.content},
                     "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def create_app(responder: Responder, faults: FaultConfig | None = None,
               model_ids: tuple[str, ...] = ("world-teacher",)) -> FastAPI:
    faults = faults or FaultConfig()
    app = FastAPI(title="xllava OpenAI-compatible test server", docs_url=None, redoc_url=None)
    stats = ServerStats()
    app.state.stats = stats

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "xllava"}
                                           for m in model_ids]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            return _error(400, "request body is not JSON", "invalid_request_error")
        digest = hashlib.sha256(raw).hexdigest()
        occurrence = stats.seen[digest]
        stats.seen[digest] += 1
        arrived = time.monotonic()
        if faults.latency_s:
            await asyncio.sleep(faults.latency_s)
        fault = faults.draw(digest, occurrence)
        stats.faults[fault] += 1
        stats.arrivals.setdefault(digest, []).append((arrived, fault))
        if fault == "429":
            ms = faults.retry_after_s * 1000
            headers = {"retry-after-ms": f"{ms:.0f}", "retry-after": str(math.ceil(faults.retry_after_s))}
            return _error(429, "Rate limit reached (injected)", "rate_limit_error", headers)
        if fault == "500":
            return _error(500, "Internal server error (injected)", "server_error")
        if fault == "timeout":
            await asyncio.sleep(faults.hang_s)
        chat_request = ChatRequest(body, dict(request.headers))
        rf = chat_request.response_format or {}
        if faults.reject_json_schema and rf.get("type") == "json_schema":
            return _error(400, "response_format json_schema is not supported by this server",
                          "invalid_request_error")
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return _error(400, "messages must be a non-empty list", "invalid_request_error")
        try:
            reply = responder(chat_request)
            if inspect.isawaitable(reply):
                reply = await reply
        except ResponderError as err:
            return _error(err.status_code, err.message, "invalid_request_error")
        if isinstance(reply, str):
            reply = Reply(reply)
        if fault == "malformed":
            reply = Reply(reply.content[: len(reply.content) // 2], reply.prompt_tokens, reply.completion_tokens)
        payload = _completion(chat_request.model or model_ids[0], reply, chat_request)
        return Response(json.dumps(payload, ensure_ascii=False), media_type="application/json")

    return app


class ServerThread:
    """Serve an app with uvicorn in a background thread on a pre-bound loopback socket (port 0 picks a
    free one, known before the first request); `stop()` or leaving the `with` block shuts it down."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0):
        self.app = app
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host, self.port = self._sock.getsockname()[:2]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=1, backlog=4096)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def stats(self) -> ServerStats:
        return self.app.state.stats

    def start(self) -> ServerThread:
        if self._thread.is_alive():  # already started (e.g. start_world_teacher, then `with`)
            return self
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server on {self.base_url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_forever(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, fd: int | None = None) -> None:
    """Serve in the foreground (the `xllava datagen teacher` command); `fd` is a listening socket
    inherited from a parent process (see ServerProcess), used instead of host and port."""
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=1, backlog=4096)
    sockets = [socket.socket(fileno=fd)] if fd is not None else None  # family and type read from the fd
    uvicorn.Server(config).run(sockets=sockets)


class ServerProcess:
    """A server command in a child process, listening on a loopback socket this process binds first
    (port 0: a free one) and hands down by file descriptor, so the port is known at once and no
    other process can take it. The child runs on its own CPU core: a server in a thread would share
    the client's interpreter lock. `command` gets `--fd N` appended."""

    def __init__(self, command: list[str], host: str = "127.0.0.1", port: int = 0, ready_timeout_s: float = 120):
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sock.listen(4096)
        self.host, self.port = self._sock.getsockname()[:2]
        self._command, self._ready_timeout_s = command, ready_timeout_s
        self._log = tempfile.TemporaryFile()  # a file, not a pipe: a chatty child never blocks on it
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> ServerProcess:
        if self.proc is not None:
            return self
        fd = self._sock.fileno()
        self.proc = subprocess.Popen([*self._command, "--fd", str(fd)], pass_fds=[fd],
                                     stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self._ready_timeout_s
        while True:
            if self.proc.poll() is not None:
                self._log.seek(0)
                raise RuntimeError(f"server process exited with {self.proc.returncode}: "
                                   f"{self._log.read().decode(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=5) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server process on {self.base_url} not ready in {self._ready_timeout_s} s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._sock.close()
        self._log.close()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
