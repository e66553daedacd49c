"""The OpenAI-compatible HTTP server: FastAPI routes over the batching engine.

Routes: POST /v1/chat/completions (JSON or server-sent events), GET /v1/models, GET /health, and the
demo page at /. Every refusal is an OpenAI-style JSON error with a 4xx status; a failure inside
generation fails only the requests it touched, and the server keeps answering.

A request's cost is bounded before the work it would cause: a full queue is refused (503 with
Retry-After) before the body is read, text longer than any prompt under the token limit before it
is tokenised, images by bytes, pixels, aspect ratio and processed size before they are processed
(images.py, limits.py), and a non-streaming request whose client went away leaves the batch.
Keys belong in the Authorization header: a key in the query string is refused, and query strings
never reach the access log.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import torch
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from xllava.serve import protocol
from xllava.serve.config import ServeConfig
from xllava.serve.engine import Engine, Event, Job
from xllava.serve.errors import ApiError, error_body
from xllava.serve.limits import longest_token_chars
from xllava.serve.logs import redact_access_log, refuse_query_keys
from xllava.serve.prompt import encode, request_messages
from xllava.serve.sampling import Sampling
from xllava.serve.web import demo_page, page_headers

log = logging.getLogger("xllava.serve")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The weights' dtype for inference; auto: bf16 on a GPU that has it, fp32 elsewhere."""
    if name == "auto":
        gpu_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if gpu_bf16 else torch.float32
    if name not in DTYPES:
        raise ValueError(f"dtype {name!r}: expected auto, {', '.join(DTYPES)}")
    return DTYPES[name]


class Server:
    """The loaded model, its engine and the settings: what the routes share."""

    def __init__(self, model_dir: Path, cfg: ServeConfig):
        from xllava.model.assemble import load_llava

        self.cfg = cfg
        self.name = cfg.model_name or Path(model_dir).resolve().name
        device = resolve_device(cfg.device)
        self.model, self.processor = load_llava(Path(model_dir), dtype=resolve_dtype(cfg.dtype, device))
        if device.type == "cpu" and cfg.cpu_threads:
            torch.set_num_threads(cfg.cpu_threads)
        self.model.to(device)
        self.engine = Engine(self.model, self.processor.tokenizer, cfg.max_batch_size, cfg.batch_wait_ms, cfg.max_queue,
                             cfg.retry_after_s)
        # no prompt within max_prompt_tokens holds more characters than this (limits.py)
        self.max_text_chars = cfg.max_prompt_tokens * longest_token_chars(self.processor.tokenizer)
        # a body without images is text and structure: JSON writes a character in at most 12 bytes
        self.text_body_limit = 12 * self.max_text_chars + (1 << 20)
        gen = self.model.generation_config
        # a request without `temperature` gets the model's own default (greedy for ours), as vLLM does
        self.default_temperature = float(gen.temperature or 1.0) if gen.do_sample else 0.0
        self.default_top_p = float(gen.top_p or 1.0) if gen.do_sample else 1.0
        self.created = int(time.time())

    def job_for(self, req: protocol.ChatRequest, sink) -> Job:
        """Validate and encode a request (images, template, limits) into an engine job. Runs in a worker thread."""
        cfg = self.cfg
        asked = req.max_completion_tokens or req.max_tokens
        if asked is not None and asked > cfg.max_tokens_limit:
            param = "max_completion_tokens" if req.max_completion_tokens else "max_tokens"
            raise ApiError(400, f"{param} is {asked}, more than this server's limit of {cfg.max_tokens_limit}",
                           param, "max_tokens_exceeded")
        messages, images = request_messages(req, cfg, self.max_text_chars, self.processor.image_processor)
        prompt = encode(self.processor, messages, images, cfg.max_prompt_tokens)
        room = (self.engine.max_positions or 1 << 30) - len(prompt.input_ids)
        if room < 1 or (asked is not None and asked > room):
            raise ApiError(400, f"the prompt ({len(prompt.input_ids)} tokens) plus max_tokens ({asked or 1}) exceeds "
                           f"the model's context of {self.engine.max_positions} tokens", "messages",
                           "context_length_exceeded")
        sampling = Sampling(
            temperature=self.default_temperature if req.temperature is None else req.temperature,
            top_p=self.default_top_p if req.top_p is None else req.top_p,
            seed=req.seed,
        )
        max_tokens = asked if asked is not None else min(cfg.default_max_tokens, room)
        return Job(prompt, max_tokens, sampling, sink, req.stop or [], req.ignore_eos, stream=req.stream)


def create_app(model_dir: Path, cfg: ServeConfig | None = None) -> FastAPI:
    cfg = cfg or ServeConfig()
    server = Server(model_dir, cfg)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        redact_access_log()  # here: uvicorn has configured its loggers by now
        server.engine.start()
        yield
        server.engine.stop()

    app = FastAPI(title="xllava", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.server = server

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, e: ApiError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(e.status_code, str(e.detail)), status_code=e.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, e: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse(error_body(500, f"internal error: {type(e).__name__}"), status_code=500)

    def authorize(request: Request) -> None:
        refuse_query_keys(request)
        if cfg.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "missing API key: send the header 'Authorization: Bearer <key>'",
                           code="invalid_api_key")
        if not hmac.compare_digest(token.strip().encode(), cfg.api_key.encode()):
            raise ApiError(401, "incorrect API key provided", code="invalid_api_key")

    @app.get("/health")
    async def health() -> JSONResponse:
        alive = server.engine.running  # 503 tells a load balancer to send its traffic elsewhere
        body = {"status": "ok" if alive else "engine down", "model": server.name, "active": server.engine.active,
                "queued": server.engine.queued, **server.engine.stats}
        return JSONResponse(body, status_code=200 if alive else 503)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        body = demo_page(server.name, needs_key=cfg.api_key is not None)
        return HTMLResponse(body, headers=page_headers(body))

    def model_card() -> dict:
        return {"id": server.name, "object": "model", "created": server.created, "owned_by": "xllava"}

    @app.get("/v1/models")
    async def models(request: Request) -> dict:
        authorize(request)
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str, request: Request) -> dict:
        authorize(request)
        if model_id != server.name:
            raise ApiError(404, f"model {model_id!r} not found; this server serves {server.name!r}",
                           "model", "model_not_found")
        return model_card()

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        authorize(request)
        server.engine.check_room()  # a full queue is refused before the body is read
        req = protocol.parse_request(await _read_text(request, cfg.max_body_bytes, server.text_body_limit))
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Event] = asyncio.Queue()

        def sink(ev: Event) -> None:  # engine thread -> this request's event loop
            loop.call_soon_threadsafe(events.put_nowait, ev)

        with server.engine.incoming():
            job = await run_in_threadpool(server.job_for, req, sink)
            server.engine.submit(job)
        cid = protocol.new_id()
        # the served model's name, so a client that asked for "gpt-4o" sees what answered it
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return StreamingResponse(_sse(job, events, cid, server.name, include_usage),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        try:
            ev = await _final_event(events, request)
        finally:
            job.cancel()  # a no-op when done; frees the row if the client went away
        if ev is None:
            log.info("client disconnected; its request was cancelled")
            return Response(status_code=499)  # nginx's "client closed request": nobody reads it
        if ev.kind == "error":
            raise ApiError(500, ev.text, code="generation_failed")
        return protocol.completion(cid, server.name, ev.text, ev.finish_reason or "stop",
                                   ev.prompt_tokens, ev.completion_tokens)

    return app


async def _read_text(request: Request, limit: int, text_limit: int) -> str:
    """The request body as text, refused with 413 once it passes `limit` bytes (before it is all in
    memory), and with 400 when it holds no image and is longer than any prompt's text can be.

    Memory: the body is read into one buffer (no list of chunks joined into a second copy) and only
    the decoded text outlives this function, so parsing it holds two copies at most, not three."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body is {declared} bytes, more than the limit of {limit}",
                       code="request_too_large")
    body = bytearray()
    async for part in request.stream():
        if len(body) + len(part) > limit:
            raise ApiError(413, f"request body is more than the limit of {limit} bytes", code="request_too_large")
        body += part
    if len(body) > text_limit and b'"image_url"' not in body:
        raise ApiError(400, f"request body is {len(body)} bytes without an image: more text than any prompt within "
                       "this server's token limit can hold", "messages", "context_length_exceeded")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ApiError(400, f"request body is not valid UTF-8 (byte {e.start})", code="invalid_json") from None


async def _final_event(events: asyncio.Queue[Event], request: Request) -> Event | None:
    """The request's last event ("done" or "error"), or None when the client disconnects first (the
    caller then cancels its job, and the batch row is freed at the next step)."""
    async def disconnected() -> None:
        # the body is read: the next ASGI message is the disconnect (uvicorn sends nothing else)
        while (await request.receive())["type"] != "http.disconnect":
            pass

    async def final() -> Event:
        while (ev := await events.get()).kind == "delta":
            pass
        return ev

    done_task, gone_task = asyncio.create_task(final()), asyncio.create_task(disconnected())
    try:
        await asyncio.wait({done_task, gone_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone_task.cancel()
        if not done_task.done():
            done_task.cancel()
    if not done_task.done() or done_task.cancelled():
        return None
    return done_task.result()


def _data(obj: dict | str) -> str:
    return f"data: {obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)}\n\n"


async def _sse(job: Job, events: asyncio.Queue[Event], cid: str, model: str, include_usage: bool) -> AsyncIterator[str]:
    """Server-sent events in OpenAI's chunk format, ending with `data: [DONE]`."""
    try:
        yield _data(protocol.chunk(cid, model, {"role": "assistant", "content": ""}))
        while True:
            ev = await events.get()
            if ev.kind == "delta":
                yield _data(protocol.chunk(cid, model, {"content": ev.text}))
                continue
            if ev.kind == "error":  # the status line is sent already: the error goes in the stream
                yield _data(error_body(500, ev.text, code="generation_failed"))
                return
            yield _data(protocol.chunk(cid, model, {}, ev.finish_reason))
            if include_usage:
                yield _data(protocol.chunk(cid, model, {}, usage_=protocol.usage(ev.prompt_tokens,
                                                                               ev.completion_tokens)))
            yield _data("[DONE]")
            return
    finally:
        job.cancel()  # the client closed the stream early: free its row
