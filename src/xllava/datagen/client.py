"""The teacher client: the official `openai` AsyncOpenAI against any base URL, with our retry policy.

The SDK's own retries are switched off (`max_retries=0`) because the policy here needs more than it
offers: a retry budget per request that also spends on unusable answers (invalid JSON, wrong schema),
a limiter shared by all workers that a 429's Retry-After pauses, and the switch from `json_schema` to
JSON mode when an endpoint rejects structured output. Non-retryable 4xx answers (bad request, auth,
not found ...) fail at once. Every outcome carries a reason; API keys are scrubbed from reasons.

Time is bounded twice: `timeout_s` is a deadline for a whole attempt (connecting, the headers and the
whole body, enforced around the call, since the HTTP client's timeout bounds each read only and a
trickling teacher never trips it), and `request_timeout_s` for all attempts of a request together.
The reply is read as plain JSON (reply.py), so a reason says what came back and usage is checked.
"""

from __future__ import annotations

import asyncio
import base64
import io
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import openai
from PIL import Image

from xllava.datagen.config import TeacherConfig
from xllava.datagen.ratelimit import RateLimiter, backoff_delay, parse_retry_after
from xllava.datagen.reply import BadReply, read_reply
from xllava.datagen.schema import InvalidAnswer, parse_answer, response_format

RETRYABLE_STATUS = {408, 409, 425, 429}  # plus every 5xx
_SCHEMA_WORDS = ("response_format", "json_schema", "structured output", "guided")


@dataclass
class Outcome:
    status: str  # "ok" or "failed"
    answer: dict | None = None
    reason: str | None = None
    attempts: int = 0
    usage: dict[str, int] = field(default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0})
    errors: Counter[str] = field(default_factory=Counter)  # the cause of each failed attempt
    structured_output: str = ""
    seconds: float = 0.0
    usage_estimated: int = 0  # attempts whose usage the teacher did not give (or gave unbelievably): counted locally


@lru_cache(maxsize=512)
def image_data_url(path: Path, max_side: int, max_bytes: int) -> tuple[str, tuple[int, int]]:
    """A base64 data URL of the image, resized (longest side max_side) and re-encoded only when it is
    larger than the caps, so small images reach the teacher byte for byte."""
    raw = Path(path).read_bytes()
    with Image.open(io.BytesIO(raw)) as im:
        size, fmt = im.size, (im.format or "PNG").upper()
        if max(size) <= max_side and len(raw) <= max_bytes and fmt in ("PNG", "JPEG", "WEBP", "GIF"):
            mime = {"JPEG": "image/jpeg"}.get(fmt, f"image/{fmt.lower()}")
            return f"data:{mime};base64,{base64.b64encode(raw).decode()}", size
        im = im.convert("RGB")
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        quality = 90
        while True:
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=quality)
            if buf.tell() <= max_bytes or quality <= 30:
                break
            quality -= 15
        return f"data:image/jpeg;base64,{base64.b64encode(buf.getvalue()).decode()}", im.size


def image_tokens(size: tuple[int, int], detail: str) -> int:
    """OpenAI's published image token count (85 base + 170 per 512 px tile after scaling), an estimate
    for other endpoints; used for TPM pacing and the budget reservation."""
    if detail == "low":
        return 85
    w, h = size
    scale = min(1.0, 2048 / max(w, h))
    w, h = w * scale, h * scale
    scale = min(1.0, 768 / min(w, h))
    return 85 + 170 * math.ceil(w * scale / 512) * math.ceil(h * scale / 512)


def estimate_prompt_tokens(messages: list[dict], image_size: tuple[int, int], detail: str) -> int:
    chars = 0
    for m in messages:
        parts = m["content"] if isinstance(m["content"], list) else [{"type": "text", "text": m["content"]}]
        chars += sum(len(p.get("text", "")) for p in parts)
    return chars // 3 + image_tokens(image_size, detail) + 10  # ~3 chars per token over en/ko/zh text


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


class TeacherClient:
    def __init__(self, cfg: TeacherConfig, base_url: str, api_key: str | None,
                 limiter: RateLimiter | None = None, rng: random.Random | None = None):
        self.cfg = cfg
        self._secrets = [api_key] if api_key else []
        # max_retries=0: the retry policy is ours (see the module docstring)
        self._client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key or "EMPTY",
                                          timeout=cfg.timeout_s, max_retries=0)
        self.limiter = limiter or RateLimiter(cfg.rpm, cfg.tpm)
        self._rng = rng or random.Random()
        self.use_schema = cfg.structured_output != "json_object"

    async def close(self) -> None:
        await self._client.close()

    def _kwargs(self, task: str, languages: list[str], version: str) -> dict:
        kw: dict = {"model": self.cfg.model, "temperature": self.cfg.temperature, "max_tokens": self.cfg.max_tokens}
        if self.cfg.top_p is not None:
            kw["top_p"] = self.cfg.top_p
        if self.cfg.seed is not None:
            kw["seed"] = self.cfg.seed
        kw["response_format"] = (response_format(task, languages, version) if self.use_schema
                                 else {"type": "json_object"})
        return kw

    def _schema_rejected(self, err: openai.APIStatusError, sent: str) -> bool:
        # `sent`, not the current flag: requests in flight when another one switched also sent a schema
        text = f"{err.message} {err.body}".lower()
        return (err.status_code in (400, 422) and sent == "json_schema" and self.cfg.structured_output == "auto"
                and any(w in text for w in _SCHEMA_WORDS))

    async def request(self, messages: list[dict], task: str, languages: list[str], version: str,
                      estimate: int, may_retry: Callable[[dict], Awaitable[bool]] | None = None) -> Outcome:
        """One request with its whole retry budget; never raises for teacher-side problems.
        `may_retry(usage so far)` is asked before every retry (the cost budget's veto)."""
        out, started = Outcome("failed"), time.monotonic()
        deadline = started + self.cfg.request_timeout_s if self.cfg.request_timeout_s else math.inf
        last = "no attempt"
        while out.attempts < self.cfg.max_attempts:
            if out.attempts and may_retry is not None and not await may_retry(out.usage):
                out.reason = redact(f"budget: stopped before attempt {out.attempts + 1} ({last})", self._secrets)
                break
            left = deadline - time.monotonic()
            if left <= 0:
                out.reason = redact(f"deadline: request_timeout_s={self.cfg.request_timeout_s:g} passed after "
                                    f"{out.attempts} attempts ({last})", self._secrets)
                break
            attempt_s = min(self.cfg.timeout_s, left)
            out.attempts += 1
            retry_after: float | None = None
            kwargs = self._kwargs(task, languages, version)
            out.structured_output = kwargs["response_format"]["type"]
            entry = await self.limiter.acquire(estimate + self.cfg.max_tokens)
            try:
                # The client's documented generic request rather than chat.completions.create: the
                # typed method walks every message and the JSON schema through its parameter
                # transform (~4 ms a request here, more than the loopback teacher takes to answer)
                # to strip unset fields and rename aliases, of which our plain body has none.
                # Errors, timeouts and the parsed ChatCompletion are the same.
                # cast_to=object: the body as parsed JSON (or text), told apart in reply.py
                body = await asyncio.wait_for(self._client.post(
                    "/chat/completions", cast_to=object, body={"messages": messages, **kwargs}
                ), timeout=attempt_s)
            except (TimeoutError, openai.APITimeoutError):
                cause, last = "timeout", f"timeout: no complete answer within {attempt_s:g} s"
            except ValueError as err:  # a body declared JSON that is not
                cause, last = "not_json", f"not_json: the reply declares JSON but is not ({err})"
            except openai.APIConnectionError as err:
                cause, last = "connection", f"connection: {err.message}"
            except openai.APIStatusError as err:
                status = err.status_code
                if self._schema_rejected(err, out.structured_output):  # the endpoint has no structured output: JSON mode from now on
                    self.use_schema = False
                    out.attempts -= 1
                    continue
                cause, last = f"http_{status}", f"http_{status}: {err.message}"
                if status not in RETRYABLE_STATUS and status < 500:
                    out.errors[cause] += 1
                    out.reason = redact(f"{last} (not retryable)", self._secrets)
                    break
                retry_after = parse_retry_after(err.response.headers)
                if status == 429 and retry_after is not None:
                    self.limiter.pause_for(retry_after)
            except openai.APIError as err:  # e.g. a response body that is not a chat completion
                cause, last = "bad_response", f"bad_response: {err.message}"
            else:
                try:
                    reply = read_reply(body, estimate, self.cfg.max_tokens, self.cfg.max_answer_chars)
                except BadReply as err:
                    cause, last = err.kind, str(err)
                    if err.kind == "bad_usage":  # paid for, by an amount we cannot know: the most it could be
                        self._spend(out, estimate, self.cfg.max_tokens, entry, estimated=True)
                        out.errors[cause] += 1
                        out.reason = redact(f"{last} (not retryable)", self._secrets)
                        break
                else:
                    self._spend(out, reply.prompt_tokens, reply.completion_tokens, entry, reply.usage_estimated)
                    try:
                        out.answer = parse_answer(reply.content, task, languages)
                        out.status, out.reason = "ok", None
                        break
                    except InvalidAnswer as err:
                        cause, last = err.kind, str(err)
                        if reply.finish_reason == "length":
                            last += f" (cut at max_tokens={self.cfg.max_tokens})"
            out.errors[cause] += 1
            if out.attempts >= self.cfg.max_attempts:
                out.reason = redact(f"{last} (after {out.attempts} attempts)", self._secrets)
                break
            await asyncio.sleep(backoff_delay(out.attempts, self.cfg.backoff_base_s,
                                        self.cfg.backoff_max_s, retry_after, self._rng))
        out.seconds = time.monotonic() - started
        return out

    def _spend(self, out: Outcome, prompt: int, completion: int, entry, estimated: bool) -> None:
        out.usage["prompt_tokens"] += prompt
        out.usage["completion_tokens"] += completion
        out.usage_estimated += estimated
        self.limiter.settle(entry, prompt + completion)
