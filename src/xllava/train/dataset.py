"""Encoded LLaVA samples and the collator that batches them with pixels or cached features."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from xllava.train.data import Sample
from xllava.train.features import FeatureCache, load_pixels
from xllava.train.labels import IGNORE, Encoded, encode_samples

ENCODE_BATCH = 512  # samples per chat-template call
# Rendering the chat template is pure Python (jinja): 83k tiny-recipe samples take ~25 s on one core,
# LLaVA-665K minutes. Datasets this large are split over forked worker processes.
PARALLEL_MIN_SAMPLES = 16 * ENCODE_BATCH

# what the forked workers read: set before the fork, so nothing is pickled on the way in
_job: tuple | None = None


def _encode_chunk(i: int) -> list[Encoded]:
    chunks, tokenizer, image_token_id, n_image_tokens, max_length = _job
    return encode_samples(chunks[i], tokenizer, image_token_id, n_image_tokens, max_length)


def encode_workers(n_samples: int) -> int:
    """Worker processes for tokenising: one per core this rank may use (cores / ranks on the node),
    or none (in process) for small datasets and where fork is unavailable."""
    if n_samples < PARALLEL_MIN_SAMPLES or "fork" not in multiprocessing.get_all_start_methods():
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_rank = cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return per_rank if per_rank > 1 else 0


@contextmanager
def _tokenizers_serial() -> Iterator[None]:
    """The Rust tokenizer's own thread pool must stay off in forked children (it cannot survive a
    fork; unset, it warns in every child): the processes are the parallelism."""
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


def encoded_chunks(
    samples: list[Sample],
    tokenizer: PreTrainedTokenizerBase,
    image_token_id: int,
    n_image_tokens: int,
    max_length: int,
    workers: int,
) -> Iterator[tuple[list[Sample], list[Encoded]]]:
    """(chunk, its encodings) in order; with workers > 0 the chunks are encoded by forked processes.
    A bad sample's DataError comes back from its worker as it was raised."""
    chunks = [samples[start : start + ENCODE_BATCH] for start in range(0, len(samples), ENCODE_BATCH)]
    if workers <= 0:
        for chunk in chunks:
            yield chunk, encode_samples(chunk, tokenizer, image_token_id, n_image_tokens, max_length)
        return
    global _job
    _job = (chunks, tokenizer, image_token_id, n_image_tokens, max_length)
    try:
        with _tokenizers_serial(), multiprocessing.get_context("fork").Pool(workers) as pool:
            yield from zip(chunks, pool.imap(_encode_chunk, range(len(chunks))), strict=True)
    finally:
        _job = None


class LlavaDataset(torch.utils.data.Dataset):
    """Tokenised once up front: lengths for batching by real token count come for free."""

    def __init__(
        self,
        samples: list[Sample],
        tokenizer: PreTrainedTokenizerBase,
        image_token_id: int,
        n_image_tokens: int,
        max_length: int,
        workers: int | None = None,  # tokenising processes; None: encode_workers decides
    ):
        self.images: list[Path] = sorted({s.image for s in samples if s.image is not None})
        image_row = {p: i for i, p in enumerate(self.images)}
        self.items: list[dict] = []
        self.truncated_turns = 0
        workers = encode_workers(len(samples)) if workers is None else workers
        chunks = encoded_chunks(samples, tokenizer, image_token_id, n_image_tokens, max_length, workers)
        with tqdm(total=len(samples), desc="tokenise", unit="sample", mininterval=2) as progress:
            for chunk, encoded in chunks:
                for sample, enc in zip(chunk, encoded, strict=True):
                    self.truncated_turns += enc.truncated_turns
                    row = image_row[sample.image] if sample.image is not None else -1
                    self.items.append({"input_ids": enc.input_ids, "labels": enc.labels, "image": row})
                progress.update(len(chunk))
        self.lengths = [len(item["input_ids"]) for item in self.items]
        self.supervised_tokens = sum(sum(1 for t in it["labels"] if t != IGNORE) for it in self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


@dataclass
class LlavaCollator:
    pad_token_id: int
    images: list[Path]
    image_processor: object
    cache: FeatureCache | None = None  # when set, batches carry features instead of pixels

    def __call__(self, batch: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[row, :n] = torch.tensor(b["input_ids"])
            labels[row, :n] = torch.tensor(b["labels"])
            attention[row, :n] = 1
        out = {"input_ids": ids, "labels": labels, "attention_mask": attention}
        rows = [b["image"] for b in batch if b["image"] >= 0]
        if rows:
            if self.cache is not None:
                out["image_features"] = self.cache.rows(rows)
            else:
                out["pixel_values"] = load_pixels(self.image_processor, [self.images[r] for r in rows])
        return out
