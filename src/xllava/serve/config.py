"""The server's settings: what it serves, who may call it, and the limits that keep it up."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MIB = 1 << 20


class ServeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    # the id /v1/models lists and responses carry; default: the model directory's name
    model_name: str | None = None
    # when set, every /v1 call needs `Authorization: Bearer <api_key>` (the demo page asks for it)
    api_key: str | None = None

    # request limits; each breach is a 4xx with an OpenAI-style error, never a crash
    max_body_bytes: int = Field(48 * MIB, gt=0)
    max_image_bytes: int = Field(10 * MIB, gt=0)  # decoded bytes of one image
    max_image_pixels: int = Field(4096 * 4096, gt=0)  # width x height of one image
    # a thin image is cheap to send and costly to process (the processor scales its short side up)
    max_aspect_ratio: float = Field(20.0, ge=1)
    # width x height after the model's processor resizes an image (computed before it runs)
    max_processed_pixels: int = Field(2048 * 2048, gt=0)
    max_images: int = Field(4, ge=0)  # per request
    max_prompt_tokens: int = Field(4096, gt=0)  # after image tokens are expanded
    max_tokens_limit: int = Field(1024, gt=0)  # the most a request may ask for
    default_max_tokens: int = Field(256, gt=0)  # when a request names none
    # local image paths (`file://...` or a bare path) are read only under this folder; None: refused
    local_image_root: Path | None = None

    # dynamic batching: a request waits at most this long for companions to share its prefill
    # (none when it is alone on an idle engine); at most max_batch_size rows are generated together
    batch_wait_ms: float = Field(20.0, ge=0)
    max_batch_size: int = Field(16, gt=0)
    # requests waiting beyond this are refused with 503 rather than queued without bound
    max_queue: int = Field(256, gt=0)
    # the Retry-After (seconds) a 503 "server busy" carries
    retry_after_s: int = Field(1, ge=0)
    # "auto": the GPU when there is one
    device: str = "auto"
    # the weights' dtype: auto is bf16 on a GPU that has it, fp32 on a CPU
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    # torch intra-op threads on CPU. One is the robust choice for small models: batching already
    # fills the core, and on a shared CPU a 2-thread pool stalls whenever its second thread is
    # descheduled (10-30x slower steps measured on 2 loaded cores). None: torch's default.
    cpu_threads: int | None = Field(1, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> ServeConfig:
        if self.default_max_tokens > self.max_tokens_limit:
            self.default_max_tokens = self.max_tokens_limit
        if self.local_image_root is not None:
            self.local_image_root = self.local_image_root.resolve()
        return self
