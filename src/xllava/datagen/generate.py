"""The generator's flow: select images, skip finished keys, ask the teacher with bounded concurrency,
gate the items, append each finished request to the store, stop before the budget is crossed.

    select_images -> jobs (image x task, minus finished keys) -> N workers:
        limiter -> TeacherClient.request -> quality.gate_items -> Store.append -> progress bar

Budget: before a request starts, its estimated cost (prompt estimate plus max_tokens at the model's
prices) is reserved; a request that would take spent + reserved past `budget_usd` is not started, and
the run ends with the remaining pairs untouched (not failed), so a later run with a larger budget
continues them. A retry is vetoed the same way (its record says `budget: ...`, and a later run asks
that key again). The budget counts everything the store has spent, over all runs.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from xllava.datagen.client import Outcome, TeacherClient, estimate_prompt_tokens, image_data_url
from xllava.datagen.config import DatagenConfig, ModelPrice
from xllava.datagen.prompts import build_messages
from xllava.datagen.quality import gate_items
from xllava.datagen.selection import SelectedImage, select_images
from xllava.datagen.store import Store, public_endpoint, request_key


@dataclass
class Job:
    image: SelectedImage
    task: str
    key: str


def generation_params(cfg: DatagenConfig) -> dict:
    t = cfg.teacher
    return {"temperature": t.temperature, "top_p": t.top_p, "max_tokens": t.max_tokens, "seed": t.seed}


def _cost(usage: dict[str, int], price: ModelPrice | None) -> float:
    if price is None:
        return 0.0
    return (usage["prompt_tokens"] * price.input_per_mtok + usage["completion_tokens"] * price.output_per_mtok) / 1e6


def _reason_class(reason: str | None) -> str:
    return (reason or "unknown").split(":", 1)[0].split(" ", 1)[0]


class _Run:
    def __init__(self, cfg: DatagenConfig, store: Store, client: TeacherClient, endpoint: str, progress: bool):
        self.cfg, self.store, self.client, self.endpoint = cfg, store, client, endpoint
        self.price = cfg.prices.get(cfg.teacher.model)
        self.spent_before = store.spent_usd
        self.spent, self.reserved = 0.0, 0.0
        self.budget_stopped = False
        self.settled = asyncio.Condition()
        self.counts: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.rejected_items: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0}
        self.usage_estimated = 0  # requests with an attempt whose usage was counted locally (reply.py)
        self.bar = tqdm(total=0, disable=not progress, unit="req", dynamic_ncols=True)

    async def _reserve(self, estimate_usd: float) -> bool:
        """Reserve the request's estimated cost; while other requests hold reservations that may
        settle lower, wait for them rather than stop early."""
        budget = self.cfg.budget_usd
        async with self.settled:
            while budget is not None and self.spent_before + self.spent + self.reserved + estimate_usd > budget:
                if self.reserved <= 0 or self.budget_stopped:
                    self.budget_stopped = True
                    return False
                await self.settled.wait()
            self.reserved += estimate_usd
            return True

    async def _may_retry(self, usage: dict[str, int]) -> bool:
        """Another attempt only while what this request has cost so far, plus every reservation (its
        own covers the next attempt), stays within the budget."""
        budget = self.cfg.budget_usd
        if budget is not None and self.spent_before + self.spent + self.reserved + _cost(usage, self.price) > budget:
            self.budget_stopped = True
            return False
        return True

    async def _release(self, estimate_usd: float) -> None:
        async with self.settled:
            self.reserved -= estimate_usd
            self.settled.notify_all()

    async def worker(self, queue: asyncio.Queue[Job]) -> None:
        t = self.cfg.teacher
        while not queue.empty() and not self.budget_stopped:
            job = queue.get_nowait()
            url, size = image_data_url(job.image.path, t.image_max_side, t.image_max_bytes)
            messages = build_messages(job.image, job.task, self.cfg.languages, self.cfg.prompt_version,
                                      url, t.image_detail)
            estimate = estimate_prompt_tokens(messages, size, t.image_detail)
            estimate_usd = _cost({"prompt_tokens": estimate, "completion_tokens": t.max_tokens}, self.price)
            if not await self._reserve(estimate_usd):
                queue.put_nowait(job)  # untouched: counted as not started
                return
            try:
                outcome = await self.client.request(messages, job.task, self.cfg.languages,
                                                     self.cfg.prompt_version, estimate, self._may_retry)
                self.finish(job, outcome)  # spends before the reservation is released
            finally:
                await self._release(estimate_usd)

    def finish(self, job: Job, outcome: Outcome) -> None:
        cost = _cost(outcome.usage, self.price)
        self.spent += cost
        for k in self.usage:
            self.usage[k] += outcome.usage[k]
        self.usage_estimated += outcome.usage_estimated > 0
        self.errors.update(outcome.errors)
        items, scene_graph, status, reason = [], None, outcome.status, outcome.reason
        if outcome.status == "ok" and outcome.answer is not None:
            items = gate_items(outcome.answer, job.task, self.cfg.quality)
            scene_graph = outcome.answer.get("scene_graph")
            for item in items:
                if item["rejected"]:
                    self.rejected_items[item["rejected"].split(":", 1)[0]] += 1
            if not any(item["rejected"] is None for item in items):
                status = "rejected"
                reason = "no accepted item" if items else "no_items: the answer holds no conversation"
        if status == "failed":
            self.failures[_reason_class(reason)] += 1
        self.counts[status] += 1
        self.store.append({
            "key": job.key,
            "status": status,
            "reason": reason,
            "image_id": job.image.image_id,
            "image": job.image.rel_path,
            "image_sha256": job.image.digest,
            "task": job.task,
            "languages": self.cfg.languages,
            "prompt_version": self.cfg.prompt_version,
            "model": self.cfg.teacher.model,
            "endpoint": self.endpoint,
            "params": generation_params(self.cfg),
            "structured_output": outcome.structured_output,
            "attempts": outcome.attempts,
            "errors": dict(outcome.errors),
            "usage": outcome.usage,
            "usage_estimated": outcome.usage_estimated > 0,
            "cost_usd": round(cost, 8),
            "seconds": round(outcome.seconds, 3),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "scene_graph": scene_graph,
            "items": items,
        })
        self.bar.update(1)
        self.bar.set_postfix(ok=self.counts["ok"], rejected=self.counts["rejected"], failed=self.counts["failed"],
                             cost=f"${self.spent_before + self.spent:.4f}", refresh=False)


async def generate_async(cfg: DatagenConfig, image_root: Path, out_dir: Path, base_url: str,
                         endpoint_id: str | None = None, only_ids: set[str] | None = None,
                         api_key: str | None = None, progress: bool = True) -> dict:
    """Run the generator into `out_dir/cfg.store`; returns the run summary (also the CLI's output)."""
    started = time.monotonic()
    if cfg.budget_usd is not None and cfg.teacher.model not in cfg.prices:
        raise ValueError(f"budget_usd is set but prices has no entry for model {cfg.teacher.model!r}")
    if cfg.teacher.model not in cfg.prices:
        warnings.warn(f"no price for model {cfg.teacher.model!r}: cost is counted as 0", stacklevel=2)
    if api_key is None and cfg.teacher.api_key_env:
        api_key = os.environ.get(cfg.teacher.api_key_env)
    endpoint = endpoint_id or public_endpoint(base_url)
    selection = select_images(image_root, cfg.selection, only_ids)
    params = generation_params(cfg)
    store = Store(Path(out_dir) / cfg.store)
    client = TeacherClient(cfg.teacher, base_url, api_key, rng=random.Random())
    try:
        jobs, already = [], 0
        for image in selection.images:
            for task in cfg.tasks:
                key = request_key(image.digest, task, cfg.languages, cfg.prompt_version, cfg.teacher.model,
                                  endpoint, params)
                done = store.records.get(key)
                again = done and done["status"] == "failed" and (
                    cfg.retry_failed or str(done.get("reason")).startswith("budget"))  # stopped, not refused
                if done and not again:
                    already += 1
                    continue
                jobs.append(Job(image, task, key))
        run = _Run(cfg, store, client, endpoint, progress)
        run.bar.total = len(jobs)
        queue: asyncio.Queue[Job] = asyncio.Queue()
        for job in jobs:
            queue.put_nowait(job)
        asking = time.monotonic()
        workers = [asyncio.create_task(run.worker(queue)) for _ in range(min(cfg.teacher.concurrency, len(jobs)))]
        await asyncio.gather(*workers)
        asking = time.monotonic() - asking
        run.bar.close()
    finally:
        await client.close()
        store.close()
    seconds = time.monotonic() - started
    requested = sum(run.counts.values())
    notes = []
    if run.usage_estimated:
        notes.append(f"{run.usage_estimated} of {requested} requests came back without believable usage: their "
                     "tokens were counted locally (a generous estimate) and that estimate is in the cost")
        warnings.warn(notes[-1], stacklevel=2)
    return {
        "images": selection.counts,
        "pairs": len(selection.images) * len(cfg.tasks),
        "already_finished": already,
        "requested": requested,
        "ok": run.counts["ok"],
        "rejected": run.counts["rejected"],
        "failed": run.counts["failed"],
        "not_started": queue.qsize(),
        "budget_stopped": run.budget_stopped,
        "failures_by_reason": dict(run.failures),
        "rejected_items_by_reason": dict(run.rejected_items),
        "attempt_errors": dict(run.errors),
        "usage": run.usage,
        "usage_estimated_requests": run.usage_estimated,
        "warnings": notes,
        "cost_usd_run": round(run.spent, 6),
        "cost_usd_total": round(run.spent_before + run.spent, 6),
        "budget_usd": cfg.budget_usd,
        "structured_output": "json_schema" if client.use_schema else "json_object",
        "store_repaired": store.repaired,
        "endpoint": endpoint,
        "seconds": round(seconds, 2),
        "request_seconds": round(asking, 2),  # the requests alone, without selection and set-up
        "requests_per_s": round(requested / asking, 2) if asking > 0 else None,
        "store": str(store.path),
    }


def generate(cfg: DatagenConfig, image_root: Path, out_dir: Path, base_url: str, **kwargs) -> dict:
    return asyncio.run(generate_async(cfg, image_root, out_dir, base_url, **kwargs))
