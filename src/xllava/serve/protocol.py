"""The OpenAI chat-completions wire format: the request we accept and the objects we answer with.

Unknown request fields are ignored (clients send many we have no use for: `user`, penalties),
fields we cannot honour (`n` > 1, `logprobs`, tools, a JSON `response_format`) are refused with a 400.
A body that is not JSON, nests too deeply or holds a number Python will not convert is a 400 too.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from xllava.serve.errors import ApiError


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())


class TextPart(_Lenient):
    type: Literal["text"]
    text: str


class ImageURL(_Lenient):
    url: str
    detail: str | None = None  # "low"/"high"/"auto": one resolution here, so it is ignored


class ImagePart(_Lenient):
    type: Literal["image_url"]
    image_url: ImageURL


Part = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class Message(_Lenient):
    # "developer" is the newer name of "system"
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[Part] | None = None


class StreamOptions(_Lenient):
    include_usage: bool = False


class ChatRequest(_Lenient):
    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)  # the newer name of max_tokens
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(1 << 63), lt=1 << 64)  # what torch.Generator takes
    n: int = 1
    logprobs: bool | None = None
    tools: list[Any] | None = None
    # only {"type": "text"}: JSON mode would need constrained decoding, which this server does not do,
    # and a caller that asked for JSON must not get free text it believes was checked
    response_format: dict[str, Any] | None = None
    # vLLM's extension: generate exactly max_tokens tokens (benchmarks use it)
    ignore_eos: bool = False

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> list[str] | None:
        if v is None:
            return None
        stops = [v] if isinstance(v, str) else v
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        if any(s == "" for s in stops):
            raise ValueError("stop sequences must not be empty")
        return stops


# A request holds a few messages and parts; a body of a million tiny objects (within the byte limit)
# would cost hundreds of megabytes as Python objects. Counted on the raw bytes before parsing (a
# brace inside a text counts too: no text within the prompt limits holds this many).
MAX_JSON_CONTAINERS = 100_000


def parse_request(raw: bytes | str) -> ChatRequest:
    """A request body to a ChatRequest, or a 400 that names the offending field."""
    containers = raw.count(b"{" if isinstance(raw, bytes) else "{") + raw.count(b"[" if isinstance(raw, bytes) else "[")
    if containers > MAX_JSON_CONTAINERS:
        raise ApiError(400, f"request body holds {containers} JSON objects and arrays, more than the "
                       f"{MAX_JSON_CONTAINERS} any chat request needs", code="invalid_json")
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ApiError(400, "request body is not valid JSON: it nests too deeply", code="invalid_json") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an integer past Python's digit limit
        raise ApiError(400, f"request body is not valid JSON: {str(e)[:200]}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object")
    try:
        req = ChatRequest.model_validate(data)
    except RecursionError:
        raise ApiError(400, "request body nests too deeply", code="invalid_json") from None
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ApiError(400, f"{where}: {first['msg']}", param=where) from None
    if req.n != 1:
        raise ApiError(400, "only n=1 is supported", param="n")
    if req.logprobs:
        raise ApiError(400, "logprobs are not supported", param="logprobs")
    if req.tools:
        raise ApiError(400, "tools are not supported", param="tools")
    if req.response_format is not None and req.response_format.get("type", "text") != "text":
        raise ApiError(400, f"response_format {req.response_format.get('type')!r} is not supported: this server "
                       "generates free text only", param="response_format")
    return req


def new_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion(cid: str, model: str, text: str, finish: str, prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
                "logprobs": None,
            }
        ],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def chunk(cid: str, model: str, delta: dict, finish: str | None = None, usage_: dict | None = None) -> dict:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [] if usage_ is not None else [{"index": 0, "delta": delta, "finish_reason": finish}],
        **({"usage": usage_} if usage_ is not None else {}),
    }
