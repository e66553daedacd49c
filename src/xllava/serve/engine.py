"""The generation engine: one thread steps a batch of requests token by token with a KV cache.

Requests are prefilled in groups (left-padded; images through the vision tower together) and
merged into the running batch, their cache left-padded to the batch's length. Every step feeds one
token per row; a row that meets its end-of-sequence token, a stop sequence or its max_tokens leaves
the batch at once and its caller gets the answer, while the others go on. Padding positions are
masked and each row carries its own position ids, so a row's answer is the one it would get alone.

Written here because transformers' `generate` runs one fixed batch to the end, and its
continuous-batching manager takes token ids only (no pixel values); this loop calls the plain
LLaVA forward that every saved model runs.
"""

from __future__ import annotations

import inspect
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from transformers import DynamicCache, LlavaForConditionalGeneration, PreTrainedTokenizerBase

from xllava.serve.errors import ApiError
from xllava.serve.prompt import Prompt
from xllava.serve.sampling import Sampling, next_tokens
from xllava.serve.textstream import TextStream

log = logging.getLogger("xllava.serve")


@dataclass
class Event:
    kind: str  # "delta", "done" or "error"
    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class Job:
    prompt: Prompt
    max_tokens: int
    sampling: Sampling
    sink: Callable[[Event], None]  # called on the engine thread; must not block
    stops: list[str] = field(default_factory=list)
    ignore_eos: bool = False
    # False: only the final event (a non-streaming request needs no per-token wake-ups of its caller)
    stream: bool = True
    cancelled: bool = False
    finished: bool = False  # its "done" or "error" event was sent
    queued_at: float = 0.0

    def cancel(self) -> None:
        self.cancelled = True

    def emit(self, event: Event) -> None:
        if self.finished:
            return
        self.finished = event.kind != "delta"
        try:
            self.sink(event)
        except Exception:  # the caller is gone (closed event loop): stop working for it
            self.cancelled = True


@dataclass
class _Row:
    job: Job
    stream: TextStream
    n_generated: int = 0
    done: bool = False


class Engine:
    def __init__(
        self,
        model: LlavaForConditionalGeneration,
        tokenizer: PreTrainedTokenizerBase,
        max_batch_size: int = 16,
        batch_wait_ms: float = 20.0,
        max_queue: int = 256,
        retry_after_s: int = 1,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.batch_wait = batch_wait_ms / 1000
        self.max_queue = max_queue
        self.retry_after_s = retry_after_s
        gen = model.generation_config
        eos = gen.eos_token_id if gen.eos_token_id is not None else tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(self.eos_ids), 0)
        self.max_positions: int | None = getattr(model.config.get_text_config(), "max_position_embeddings", None)
        # transformers 5 renamed `past_key_values` to `cache` (the old name is deprecated)
        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self.device = next(model.parameters()).device

        self._pending: deque[Job] = deque()
        self._incoming = 0  # requests being prepared (parsed, images decoded, tokenized) right now
        self._cv = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        # the running batch: one entry of each per row
        self._rows: list[_Row] = []
        self._cache: DynamicCache | None = None
        self._mask = torch.zeros(0, 0, dtype=torch.long)  # [B, cache length]: 0 at padding
        self._pos = torch.zeros(0, dtype=torch.long)  # [B]: position id of the next token fed
        self._last = torch.zeros(0, dtype=torch.long)  # [B]: the token fed at the next step
        # counters for /health and the bench; rows_stepped / steps is the mean batch size
        self.stats = {"requests": 0, "generated_tokens": 0, "steps": 0, "rows_stepped": 0, "prefills": 0, "errors": 0,
                      "prefill_seconds": 0.0, "step_seconds": 0.0}

    # ------------------------------------------------------------------ public, any thread

    def start(self) -> Engine:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="xllava-engine", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def submit(self, job: Job) -> None:
        if self._thread is None or not self._thread.is_alive():
            raise ApiError(503, "the generation engine is not running", code="engine_down",
                           headers={"Retry-After": str(self.retry_after_s)})
        with self._cv:
            if len(self._pending) >= self.max_queue:
                raise ApiError(503, f"server busy: {len(self._pending)} requests queued; retry shortly",
                               code="server_busy", headers={"Retry-After": str(self.retry_after_s)})
            job.queued_at = time.monotonic()
            self._pending.append(job)
            self._cv.notify()

    def check_room(self) -> None:
        """503 with Retry-After when the queue and the requests being prepared fill max_queue: called
        before a request's body is read, so that a flood costs little."""
        if len(self._pending) + self._incoming >= self.max_queue:
            raise ApiError(503, f"server busy: {len(self._pending) + self._incoming} requests waiting; retry shortly",
                           code="server_busy", headers={"Retry-After": str(self.retry_after_s)})

    @contextmanager
    def incoming(self) -> Iterator[None]:
        """Around preparing and submitting a request: while requests are being prepared, an idle
        engine waits for them (up to batch_wait) so that they share one prefill."""
        with self._cv:
            self._incoming += 1
        try:
            yield
        finally:
            with self._cv:
                self._incoming -= 1
                self._cv.notify()

    def generate(self, prompt: Prompt, max_tokens: int, sampling: Sampling, stops: list[str] | None = None,
                 ignore_eos: bool = False) -> Iterator[Event]:
        """Blocking iterator over one request's events (for the terminal chat and scripts)."""
        events: queue.Queue[Event] = queue.Queue()
        job = Job(prompt, max_tokens, sampling, events.put, stops or [], ignore_eos)
        self.submit(job)
        try:
            while True:
                ev = events.get()
                yield ev
                if ev.kind != "delta":
                    return
        finally:
            job.cancel()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def queued(self) -> int:
        return len(self._pending)

    @property
    def active(self) -> int:
        return len(self._rows)

    # ------------------------------------------------------------------ the engine thread

    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                jobs = self._take()
                if self._stopping:
                    break
                if jobs:
                    t = time.perf_counter()
                    self._guarded(self._admit, jobs)
                    self.stats["prefill_seconds"] += time.perf_counter() - t
                if self._rows:
                    t = time.perf_counter()
                    self._guarded(self._step)
                    self.stats["step_seconds"] += time.perf_counter() - t
        for row in self._rows:
            row.job.emit(Event("error", "the server is shutting down"))
        self._reset()

    def _guarded(self, fn: Callable, *args) -> None:
        """Run a model call; if it fails (out of memory, a bad input that got past the checks), fail
        the requests in flight with an error event, drop the batch and keep serving."""
        try:
            fn(*args)
        except Exception as e:
            log.exception("generation failed")
            self.stats["errors"] += 1
            for job in [*(args[0] if args else []), *(r.job for r in self._rows)]:
                job.emit(Event("error", f"generation failed: {type(e).__name__}: {e}"))
            self._reset()

    def _take(self) -> list[Job]:
        """The requests to prefill now, maybe none. A prefill runs the vision tower and the whole
        prompt, and costs about the same for one request as for several, so requests are grouped:
        they wait (at most batch_wait) while companions are still being prepared or, when a batch
        is running, while others may still arrive; a request alone on an idle engine starts at once."""
        with self._cv:
            while not self._stopping:
                room = self.max_batch_size - len(self._rows)
                if not self._pending or room <= 0:
                    if self._rows:
                        return []
                    self._cv.wait(timeout=0.5)
                    continue
                waited = time.monotonic() - self._pending[0].queued_at
                if len(self._pending) >= room or waited >= self.batch_wait or (not self._rows and not self._incoming):
                    break
                if self._rows:
                    return []  # keep stepping the batch; look again after the step
                self._cv.wait(timeout=self.batch_wait - waited)
            room = self.max_batch_size - len(self._rows)
            jobs: list[Job] = []
            while self._pending and len(jobs) < room and not self._stopping:
                job = self._pending.popleft()
                if not job.cancelled:
                    jobs.append(job)
            return jobs

    def _forward(self, **kw) -> tuple[torch.Tensor, DynamicCache]:
        out = self.model(**kw, use_cache=True, logits_to_keep=1)
        cache = getattr(out, "cache", None) or out.past_key_values
        return out.logits[:, -1], cache

    def _admit(self, jobs: list[Job]) -> None:
        """Prefill new requests together, merge them into the running batch, take their first token."""
        self.stats["prefills"] += 1
        lengths = [len(j.prompt.input_ids) for j in jobs]
        width = max(lengths)
        ids = torch.full((len(jobs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros(len(jobs), width, dtype=torch.long)
        for i, job in enumerate(jobs):  # left padding: every row's last token is at the same column
            ids[i, width - lengths[i]:] = torch.tensor(job.prompt.input_ids)
            mask[i, width - lengths[i]:] = 1
        pixels = [j.prompt.pixel_values for j in jobs if j.prompt.pixel_values is not None]
        logits, cache = self._forward(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=(mask.cumsum(-1) - 1).clamp(min=0).to(self.device),
            pixel_values=torch.cat(pixels).to(self.device, self.model.dtype) if pixels else None,
            **{self._cache_kw: DynamicCache()},
        )
        first = len(self._rows)
        self._merge(jobs, cache, mask.to(self.device), torch.tensor(lengths, device=self.device))
        self._accept(range(first, len(self._rows)), next_tokens(logits, [j.sampling for j in jobs]))
        self._prune()

    def _step(self) -> None:
        self.stats["steps"] += 1
        self.stats["rows_stepped"] += len(self._rows)
        step_mask = torch.cat([self._mask, self._mask.new_ones(len(self._rows), 1)], dim=1)
        logits, self._cache = self._forward(
            input_ids=self._last[:, None],
            attention_mask=step_mask,
            position_ids=self._pos[:, None],
            **{self._cache_kw: self._cache},
        )
        self._mask = step_mask
        self._pos = self._pos + 1
        self._accept(range(len(self._rows)), next_tokens(logits, [r.job.sampling for r in self._rows]))
        self._prune()

    def _accept(self, indices: range, tokens: list[int]) -> None:
        """Record each row's new token: stream its text, finish the rows that are done."""
        self._last[indices.start:indices.stop] = torch.tensor(tokens, device=self.device)
        positions = self._pos[indices.start:indices.stop].tolist()
        for i, token, pos in zip(indices, tokens, positions, strict=True):
            row = self._rows[i]
            if row.job.cancelled:
                continue
            row.n_generated += 1
            self.stats["generated_tokens"] += 1
            if token in self.eos_ids and not row.job.ignore_eos:
                self._finish(row, "stop")
                continue
            delta = row.stream.push(token)
            if delta and row.job.stream:
                row.job.emit(Event("delta", delta))
            if row.stream.stopped:
                self._finish(row, "stop")
            elif row.n_generated >= row.job.max_tokens or (
                self.max_positions is not None and pos + 1 >= self.max_positions
            ):
                self._finish(row, "length")

    def _finish(self, row: _Row, reason: str) -> None:
        tail = row.stream.finish()
        if tail and row.job.stream:
            row.job.emit(Event("delta", tail))
        row.job.emit(Event("done", row.stream.text, reason, len(row.job.prompt.input_ids), row.n_generated))
        row.done = True
        self.stats["requests"] += 1

    # ------------------------------------------------------------------ batch bookkeeping

    def _kv(self, cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(layer.keys, layer.values) for layer in cache.layers]

    def _merge(self, jobs: list[Job], cache: DynamicCache, mask: torch.Tensor, lengths: torch.Tensor) -> None:
        rows = [_Row(j, TextStream(self.tokenizer, j.stops, incremental=j.stream)) for j in jobs]
        last = torch.zeros(len(jobs), dtype=torch.long, device=self.device)
        if not self._rows:
            self._rows, self._cache, self._mask, self._pos, self._last = rows, cache, mask, lengths, last
            return
        width = max(self._mask.shape[1], mask.shape[1])

        def left(t: torch.Tensor, dim_from_end: int) -> torch.Tensor:
            # zero-pad on the left of the time dimension (-2 for keys/values, -1 for masks)
            n = width - t.shape[-dim_from_end]
            return F.pad(t, (0, 0, n, 0) if dim_from_end == 2 else (n, 0)) if n else t

        merged = [
            (torch.cat([left(k0, 2), left(k1, 2)]), torch.cat([left(v0, 2), left(v1, 2)]))
            for (k0, v0), (k1, v1) in zip(self._kv(self._cache), self._kv(cache), strict=True)
        ]
        self._cache = DynamicCache(merged)
        self._mask = torch.cat([left(self._mask, 1), left(mask, 1)])
        self._pos = torch.cat([self._pos, lengths])
        self._last = torch.cat([self._last, last])
        self._rows = self._rows + rows

    def _prune(self) -> None:
        """Drop finished and cancelled rows, then cache columns that are padding in every remaining row."""
        keep = [i for i, r in enumerate(self._rows) if not r.done and not r.job.cancelled]
        if len(keep) == len(self._rows):
            return
        if not keep:
            self._reset()
            return
        idx = torch.tensor(keep, device=self.device)
        self._rows = [self._rows[i] for i in keep]
        self._mask, self._pos, self._last = self._mask[idx], self._pos[idx], self._last[idx]
        start = int(self._mask.any(dim=0).long().argmax())
        self._cache = DynamicCache([(k[idx, :, start:], v[idx, :, start:]) for k, v in self._kv(self._cache)])
        self._mask = self._mask[:, start:]

    def _reset(self) -> None:
        self._rows, self._cache = [], None
        self._mask = torch.zeros(0, 0, dtype=torch.long, device=self.device)
        self._pos = torch.zeros(0, dtype=torch.long, device=self.device)
        self._last = torch.zeros(0, dtype=torch.long, device=self.device)
