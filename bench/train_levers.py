"""Stage-2 levers, measured on the stage's own batches, and a profile of its step.

1. Projections over real tokens only (built: `padding_free`, xllava.train.padding_free): the padding
   share of the tokens the linear layers would see in the stage's batches if each micro-batch were
   padded to its own longest sample (length-grouped global batches cut into micro-batches, as
   Trainer feeds them). Packing removes that share.
2. The prefix the records of one image share (chat header, image tokens, what precedes the first
   differing token), computed once per image in a micro-batch: the tokens it would save in the
   stage's batches, and at most (every record of an image in one batch, which changes the sampling).
3. Where a step's time goes: torch.profiler over xllava's step (cached features, packed
   micro-batches, supervised tail, fused LoRA), the top operators by their own CPU time.

    python bench/train_levers.py --recipe recipes/smol.yaml      # about 3 minutes on 2 cores
    python bench/train_levers.py --smoke     # a shrunk tiny run in seconds (tests/test_bench_scripts.py)
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench_common import cpu_name, prepared_world  # noqa: E402

from xllava.model.assemble import load_llava  # noqa: E402
from xllava.train.data import load_samples  # noqa: E402
from xllava.train.dataset import LlavaCollator, LlavaDataset  # noqa: E402
from xllava.train.features import FeatureCache  # noqa: E402
from xllava.train.fused_lora import lora_fused  # noqa: E402
from xllava.train.fused_norm import rms_norm_fused  # noqa: E402
from xllava.train.loss import llava_loss  # noqa: E402
from xllava.train.padding_free import padding_free  # noqa: E402
from xllava.train.stage import GlobalLengthGroupedSampler, configure_trainable  # noqa: E402


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def shared_prefixes(dataset: LlavaDataset) -> dict[int, int]:
    """Image row -> the length (in full tokens) of the token prefix that all of its records share."""
    first: dict[int, list[int]] = {}
    shared: dict[int, int] = {}
    image_at: dict[int, int] = {}
    for i in range(len(dataset)):
        item = dataset[i]  # the image's run of tokens is stored as one token at image_at
        row, ids = item["image"], [int(t) for t in item["input_ids"]]
        if row < 0:
            continue
        if row not in first:
            first[row], shared[row], image_at[row] = ids, len(ids), item["image_at"]
        else:
            shared[row] = min(shared[row], common_prefix(first[row], ids))
    # a prefix that covers the image holds all of its tokens, not the one stored
    return {row: n + (dataset.n_image_tokens - 1 if 0 <= image_at[row] < n else 0) for row, n in shared.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="recipes/smol.yaml")
    parser.add_argument("--micro-batch", type=int, default=4, help="samples per forward, as Trainer's accumulation")
    parser.add_argument("--profiled", type=int, default=2, help="micro-batches profiled (after one warm-up)")
    parser.add_argument("--top", type=int, default=15, help="operators listed")
    parser.add_argument("--run-dir", default=None, help="reuse a run directory (world + base model)")
    parser.add_argument("--smoke", action="store_true", help="the tiny recipe shrunk to seconds (for tests)")
    args = parser.parse_args()

    recipe_path, run_dir, recipe, init = prepared_world(args.recipe, args.smoke, args.run_dir, "xllava-levers-")
    cfg = recipe.instruct
    model, processor = load_llava(init)
    samples = load_samples([run_dir / p for p in cfg.data], languages=cfg.languages, tasks=cfg.tasks)
    dataset = LlavaDataset(samples, processor.tokenizer, model.config.image_token_id,
                           model.config.image_seq_length, cfg.max_length)
    print(f"recipe {recipe_path}: {len(dataset)} samples of {len(dataset.images)} images, batch {cfg.batch_size} "
          f"in micro-batches of {args.micro_batch}; machine: {cpu_name()}")

    # the stage's order: one global length-grouped order, cut into global batches, then micro-batches
    order = list(GlobalLengthGroupedSampler(cfg.batch_size, dataset.lengths, cfg.seed))
    micro = [order[i : i + args.micro_batch] for i in range(0, len(order), args.micro_batch)]
    real = sum(dataset.lengths)
    padded = sum(len(ids) * max(dataset.lengths[j] for j in ids) for ids in micro)
    print(f"1. real tokens only: the stage's micro-batches hold {real} real tokens padded to {padded} "
          f"({100 * (padded - real) / padded:.1f}% padding rows, which padding_free drops)")

    shared = shared_prefixes(dataset)
    rows = [int(r) for r in dataset.rows]
    records = Counter(r for r in rows if r >= 0)
    in_prefix = sum(shared[row] * k for row, k in records.items())
    saved_stage = 0
    for ids in micro:
        per_image: dict[int, int] = defaultdict(int)
        for j in ids:
            if rows[j] >= 0:
                per_image[rows[j]] += 1
        saved_stage += sum((k - 1) * shared[row] for row, k in per_image.items())
    saved_most = sum((k - 1) * shared[row] for row, k in records.items())
    mean_prefix = sum(shared.values()) / max(1, len(shared))
    print(f"2. shared image prefix: {mean_prefix:.0f} tokens per image on average, {100 * in_prefix / real:.1f}% "
          f"of all tokens; computed once per image in a micro-batch it saves {100 * saved_stage / real:.2f}% "
          f"of the tokens in the stage's batches ({len(records)} images, {len(dataset) / max(1, len(records)):.1f} "
          f"records each); at most {100 * saved_most / real:.1f}% with every record of an image in one batch")

    # 3. the profile of xllava's step
    model, _ = configure_trainable(model, cfg.model_copy(update={"train_vision_tower": False}))
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if cfg.llm_attention is not None:
        base.set_attn_implementation({"text_config": cfg.llm_attention})
    with tempfile.TemporaryDirectory() as folder:
        cache = FeatureCache.build_or_load(base, processor.image_processor, dataset.images, Path(folder))
    collator = LlavaCollator(processor.tokenizer.pad_token_id, dataset.images, processor.image_processor, cache)
    picked = [micro[int((i + 0.5) * len(micro) / (args.profiled + 1))] for i in range(args.profiled + 1)]
    model.train()
    with lora_fused(model, enabled=cfg.lora.fused), padding_free(model, cfg.padding_free), \
            rms_norm_fused(model, enabled=cfg.fused_norm):
        llava_loss(base, **collator([dataset[j] for j in picked[0]])).backward()  # warm-up
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for ids in picked[1:]:
                llava_loss(base, **collator([dataset[j] for j in ids])).backward()
    tokens = sum(dataset.lengths[j] for ids in picked[1:] for j in ids)
    print(f"3. profile of {args.profiled} micro-batches ({tokens} real tokens), forward and backward:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))


if __name__ == "__main__":
    main()
