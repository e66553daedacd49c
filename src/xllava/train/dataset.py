"""Encoded LLaVA samples and the collator that batches them with pixels or cached features."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from xllava.train.data import Sample
from xllava.train.features import FeatureCache, load_pixels
from xllava.train.labels import IGNORE, encode_samples

ENCODE_BATCH = 512  # samples per chat-template call


class LlavaDataset(torch.utils.data.Dataset):
    """Tokenised once up front: lengths for batching by real token count come for free."""

    def __init__(
        self,
        samples: list[Sample],
        tokenizer: PreTrainedTokenizerBase,
        image_token_id: int,
        n_image_tokens: int,
        max_length: int,
    ):
        self.images: list[Path] = sorted({s.image for s in samples if s.image is not None})
        image_row = {p: i for i, p in enumerate(self.images)}
        self.items: list[dict] = []
        self.truncated_turns = 0
        with tqdm(total=len(samples), desc="tokenise", unit="sample", mininterval=2) as progress:
            for start in range(0, len(samples), ENCODE_BATCH):
                chunk = samples[start : start + ENCODE_BATCH]
                for sample, enc in zip(
                    chunk, encode_samples(chunk, tokenizer, image_token_id, n_image_tokens, max_length), strict=True
                ):
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
