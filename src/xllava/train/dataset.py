"""Encoded LLaVA samples and the collator that batches them with pixels or cached features."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from xllava.train.data import Sample
from xllava.train.features import FeatureCache, load_pixels
from xllava.train.labels import IGNORE, Encoded, encode_samples
from xllava.train.plain import encode_plain

ENCODE_BATCH = 512  # samples per chat-template call
# Rendering the chat template is pure Python (jinja): 83k tiny-recipe samples take ~25 s on one core,
# LLaVA-665K minutes. Datasets this large are split over forked worker processes.
PARALLEL_MIN_SAMPLES = 16 * ENCODE_BATCH

# what the forked workers read: set before the fork, so nothing is pickled on the way in
_job: tuple | None = None


def _encoder(format: str):
    return encode_plain if format == "plain" else encode_samples


def _encode_chunk(i: int) -> list[Encoded]:
    chunks, tokenizer, image_token_id, n_image_tokens, max_length, format = _job
    return _encoder(format)(chunks[i], tokenizer, image_token_id, n_image_tokens, max_length)


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
    format: str = "chat",
) -> Iterator[tuple[list[Sample], list[Encoded]]]:
    """(chunk, its encodings) in order; with workers > 0 the chunks are encoded by forked processes.
    A bad sample's DataError comes back from its worker as it was raised."""
    chunks = [samples[start : start + ENCODE_BATCH] for start in range(0, len(samples), ENCODE_BATCH)]
    if workers <= 0:
        for chunk in chunks:
            yield chunk, _encoder(format)(chunk, tokenizer, image_token_id, n_image_tokens, max_length)
        return
    global _job
    _job = (chunks, tokenizer, image_token_id, n_image_tokens, max_length, format)
    try:
        with _tokenizers_serial(), multiprocessing.get_context("fork").Pool(workers) as pool:
            yield from zip(chunks, pool.imap(_encode_chunk, range(len(chunks))), strict=True)
    finally:
        _job = None


class LlavaDataset(torch.utils.data.Dataset):
    """Tokenised once up front: lengths for batching by real token count come for free.

    Stored compactly, because every rank holds the whole dataset (1.19M stage-1 records at 13B):
    one int32 array of all token ids, one bool array saying which are supervised, and offsets,
    with each image's run of identical image tokens kept as one token and expanded again by the
    collator (a 576-token image would otherwise be most of every record). A few bytes a token
    instead of a Python list's ~20, and arrays, which forked dataloader workers share without
    touching (a list's reference counts would copy every page into each worker)."""

    def __init__(
        self,
        samples: list[Sample],
        tokenizer: PreTrainedTokenizerBase,
        image_token_id: int,
        n_image_tokens: int,
        max_length: int,
        workers: int | None = None,  # tokenising processes; None: encode_workers decides
        format: str = "chat",  # "plain": LLaVA's stage-1 format (xllava.train.plain)
    ):
        self.images: list[Path] = sorted({s.image for s in samples if s.image is not None})
        image_row = {p: i for i, p in enumerate(self.images)}
        self.n_image_tokens = n_image_tokens
        self.truncated_turns = 0
        ids: list[np.ndarray] = []
        supervised: list[np.ndarray] = []
        rows, image_at, lengths = [], [], []
        workers = encode_workers(len(samples)) if workers is None else workers
        chunks = encoded_chunks(samples, tokenizer, image_token_id, n_image_tokens, max_length, workers, format)
        with tqdm(total=len(samples), desc="tokenise", unit="sample", mininterval=2) as progress:
            for chunk, encoded in chunks:
                for sample, enc in zip(chunk, encoded, strict=True):
                    self.truncated_turns += enc.truncated_turns
                    tokens = np.asarray(enc.input_ids, dtype=np.int32)
                    mask = np.asarray(enc.labels, dtype=np.int64) != IGNORE
                    at = -1
                    if sample.image is not None and n_image_tokens > 1:
                        at = int(np.argmax(tokens == image_token_id))  # the run's first token
                        keep = np.ones(len(tokens), dtype=bool)
                        keep[at + 1 : at + n_image_tokens] = False
                        tokens, mask = tokens[keep], mask[keep]
                    ids.append(tokens)
                    supervised.append(mask)
                    rows.append(image_row[sample.image] if sample.image is not None else -1)
                    image_at.append(at)
                    lengths.append(len(enc.input_ids))
                progress.update(len(chunk))
        self.ids = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int32)
        self.supervised = np.concatenate(supervised) if supervised else np.zeros(0, dtype=bool)
        self.offsets = np.cumsum([0] + [len(t) for t in ids], dtype=np.int64)
        self.rows = np.asarray(rows, dtype=np.int32)
        self.image_at = np.asarray(image_at, dtype=np.int32)
        self.lengths = lengths  # full lengths (images expanded): what batching and the loss see
        self.supervised_tokens = int(self.supervised.sum())

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        """input_ids and labels with the image run collapsed to one token at `image_at` (-1: none)."""
        span = slice(self.offsets[i], self.offsets[i + 1])
        ids = self.ids[span]
        return {"input_ids": ids, "labels": np.where(self.supervised[span], ids, IGNORE),
                "image": int(self.rows[i]), "image_at": int(self.image_at[i]), "image_tokens": self.n_image_tokens}


def _expanded(values: np.ndarray, at: int, n: int) -> np.ndarray:
    """The collapsed image token at `at` repeated n times again."""
    if at < 0:
        return values
    counts = np.ones(len(values), dtype=np.int64)
    counts[at] = n
    return np.repeat(values, counts)


@dataclass
class LlavaCollator:
    pad_token_id: int
    images: list[Path]
    image_processor: object
    cache: FeatureCache | None = None  # when set, batches carry features instead of pixels
    pad: bool = False  # pad each image to a square first (LLaVA-1.5's image_aspect_ratio: pad)

    def __call__(self, batch: list[dict]) -> dict[str, torch.Tensor]:
        rows_ids = [_expanded(np.asarray(b["input_ids"]), b.get("image_at", -1), b.get("image_tokens", 1))
                    for b in batch]
        rows_labels = [_expanded(np.asarray(b["labels"]), b.get("image_at", -1), b.get("image_tokens", 1))
                       for b in batch]
        width = max(len(r) for r in rows_ids)
        ids = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (r_ids, r_labels) in enumerate(zip(rows_ids, rows_labels, strict=True)):
            n = len(r_ids)
            ids[row, :n] = torch.from_numpy(r_ids.astype(np.int64))
            labels[row, :n] = torch.from_numpy(r_labels.astype(np.int64))
            attention[row, :n] = 1
        out = {"input_ids": ids, "labels": labels, "attention_mask": attention}
        rows = [b["image"] for b in batch if b["image"] >= 0]
        if rows:
            if self.cache is not None:
                out["image_features"] = self.cache.rows(rows)
            else:
                out["pixel_values"] = load_pixels(self.image_processor, [self.images[r] for r in rows], self.pad)
        return out
