"""Stage-2 training throughput: xllava against a naive HF LLaVA loop, same model and data.

naive:  LlavaForConditionalGeneration.forward(input_ids, pixel_values, labels): the vision tower
        runs for every sample, the LM head over the full vocabulary at every position, random batches.
xllava: cached frozen-tower features (cache build time included), LM head (and a Llama-layout
        last layer) only at supervised positions, batches grouped by real token length, each
        micro-batch packed into one row without padding, LoRA projections and frozen norms fused on a CPU
        (xllava.train.fused_lora), and the recipe's stage-2 attention kernel (`instruct.llm_attention`).
Both train the same parameters (the recipe's stage-2 setup) on the same samples, each batching one
epoch of them its own way; each times `--steps` batches picked evenly across its epoch by size and
scales their time to the epoch by padded tokens. The sides take turns batch by batch. The epoch is
every stage-2 sample of a 200-scene world (4308 on smol), so the length grouper works on the
mega-batches training gives it; the ratio depends on the CPU, which the bench prints.

    # the acceptance target (>= 3x); batch 16 in parts of 4 fits 24 GB (6-11 minutes on 2 cores)
    python bench/train_throughput.py --recipe recipes/smol.yaml --batch-size 16 --micro-batch 4 --steps 4
    python bench/train_throughput.py --recipe recipes/tiny.yaml --steps 10 --samples 2560
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench_common import cpu_name  # noqa: E402
from transformers.trainer_pt_utils import LengthGroupedSampler  # noqa: E402

from xllava.config import load_recipe  # noqa: E402
from xllava.model.assemble import load_llava  # noqa: E402
from xllava.pipeline import Pipeline  # noqa: E402
from xllava.train.data import load_samples  # noqa: E402
from xllava.train.dataset import LlavaCollator, LlavaDataset  # noqa: E402
from xllava.train.features import FeatureCache  # noqa: E402
from xllava.train.fused_lora import lora_fused  # noqa: E402
from xllava.train.fused_norm import rms_norm_fused  # noqa: E402
from xllava.train.labels import IGNORE  # noqa: E402
from xllava.train.loss import llava_loss  # noqa: E402
from xllava.train.padding_free import padding_free  # noqa: E402
from xllava.train.stage import configure_trainable  # noqa: E402


def batches(order: list[int], size: int) -> list[list[int]]:
    return [order[i : i + size] for i in range(0, len(order) - size + 1, size)]


def padded_tokens(dataset, batch_list: list[list[int]], packed: bool = False) -> int:
    """The tokens a side's model runs for these batches: each padded to its longest sample, or only
    the real ones where the side packs them."""
    if packed:
        return sum(dataset.lengths[j] for ids in batch_list for j in ids)
    return sum(len(ids) * max(dataset.lengths[j] for j in ids) for ids in batch_list)


def padded_to(batch: dict[str, torch.Tensor], width: int, pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a collated micro-batch to the width of the whole batch it was cut from."""
    extra = width - batch["input_ids"].shape[1]
    if extra <= 0:
        return batch
    fill = {"input_ids": pad_id, "labels": IGNORE, "attention_mask": 0}
    return {k: F.pad(v, (0, extra), value=fill[k]) if k in fill else v for k, v in batch.items()}


@dataclass
class Side:
    """One way to train: its collator (pixels or cached features), loss, epoch of batches and setup."""

    name: str
    collator: LlavaCollator
    step_fn: Callable
    epoch: list[list[int]]
    timed: list[list[int]]
    setup: Callable[[], AbstractContextManager]
    seconds: float = 0.0
    packed: bool = False  # the model runs real tokens only (xllava.train.padding_free)


def run_batch(model, dataset, side: Side, ids: list[int], optimizer, micro_batch: int | None) -> float:
    """Seconds for one optimizer step of `side` on the samples `ids`. `micro_batch` runs the batch
    in parts padded to the whole batch's width: the batch's compute in a part of its memory."""
    width = max(dataset.lengths[j] for j in ids)
    with side.setup():
        started = time.perf_counter()
        for part in batches(ids, micro_batch or len(ids)):
            batch = padded_to(side.collator([dataset[j] for j in part]), width, side.collator.pad_token_id)
            (side.step_fn(model, batch) * len(part) / len(ids)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - started


def report(dataset, side: Side) -> float:
    """Samples/s over the side's epoch, from its timed batches scaled by the tokens the model runs."""
    samples = sum(len(ids) for ids in side.timed)
    tokens = sum(dataset.lengths[j] for ids in side.timed for j in ids)
    padded = padded_tokens(dataset, side.timed, side.packed)
    # a ratio estimate: the step time follows the tokens run, and the sample's share of the
    # epoch's tokens is known exactly, where its share of the samples is not
    epoch_seconds = side.seconds * padded_tokens(dataset, side.epoch, side.packed) / padded
    epoch_samples = sum(len(ids) for ids in side.epoch)
    print(f"{side.name:8s} {epoch_samples / epoch_seconds:8.2f} samples/s over the epoch  (timed {samples} samples in "
          f"{side.seconds:.1f} s: {samples / side.seconds:.2f}/s; {tokens} tokens, padded to {padded / tokens:.2f}x)")
    return epoch_samples / epoch_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="recipes/smol.yaml")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--micro-batch", type=int, default=None,
                        help="run each batch in parts of this many samples, padded to the batch's width "
                             "(the same compute in less memory: the smol recipe's batch of 16 on a 24 GB machine)")
    parser.add_argument("--samples", type=int, default=None,
                        help="stage-2 samples drawn from the world (default: all, one epoch as training takes it). "
                             "Fewer shrink the length grouper's mega-batches (min(samples / (4 x batch), 50) "
                             "batches), so xllava pads more than the recipe's training does")
    parser.add_argument("--run-dir", default=None, help="reuse a run directory (world + base model)")
    args = parser.parse_args()

    torch.manual_seed(0)
    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="xllava-bench-"))
    recipe = load_recipe(args.recipe, [f"output_dir={run_dir}", "world.n_train_scenes=200",
                                       "world.n_eval_scenes=4", "world.eval_questions_per_type=2",
                                       "stages=[world, datagen]", "model.projector_init=random"])
    pipe = Pipeline(recipe, log=lambda _: None)
    pipe.run()
    init = pipe.base_model_dir()
    cfg = recipe.instruct
    batch_size = args.batch_size or cfg.batch_size
    if args.micro_batch and batch_size % args.micro_batch:
        parser.error(f"--micro-batch {args.micro_batch} does not divide the batch size {batch_size}")

    model, processor = load_llava(init)
    samples = load_samples([run_dir / p for p in cfg.data])
    random.Random(0).shuffle(samples)
    samples = samples[: args.samples]  # None: all
    dataset = LlavaDataset(samples, processor.tokenizer, model.config.image_token_id,
                           model.config.image_seq_length, cfg.max_length)
    model, trained = configure_trainable(model, cfg.model_copy(update={"train_vision_tower": False}))
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    print(f"recipe {args.recipe}: {sum(p.numel() for p in base.parameters()) / 1e6:.1f}M params, trained {trained}, "
          f"vocab {base.config.text_config.vocab_size}, {len(dataset)} samples of {len(dataset.images)} images, "
          f"batch {batch_size} (micro-batches {args.micro_batch or batch_size}), {args.steps} steps, torch threads {torch.get_num_threads()}")
    print(f"machine: {cpu_name()}")

    # Throughput over one epoch of the same samples, each side batching them its own way: naive in
    # random order, xllava grouped by length over the whole set, as training does. An epoch of the
    # 135M LLM takes too long on a CPU, so each side times `steps` of its epoch's batches, picked
    # evenly across them ordered by padded size (a systematic sample of the epoch's cost), after
    # one warm-up batch. Timing the first batches instead measures the longest samples for xllava:
    # the length-grouped sampler starts with them.
    everything = list(range(len(dataset)))
    random.Random(1).shuffle(everything)
    naive_epoch = batches(everything, batch_size)
    sampler = LengthGroupedSampler(batch_size, lengths=dataset.lengths, generator=torch.Generator().manual_seed(1))
    grouped_epoch = batches(list(sampler), batch_size)

    def across(epoch: list[list[int]]) -> list[list[int]]:
        by_size = sorted(epoch, key=lambda ids: padded_tokens(dataset, [ids]))
        return [by_size[int((i + 0.5) * len(by_size) / args.steps)] for i in range(args.steps)]

    warmup = naive_epoch[-1]
    pixels = LlavaCollator(processor.tokenizer.pad_token_id, dataset.images, processor.image_processor)

    def naive_step(m, batch):
        return m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                 pixel_values=batch["pixel_values"], labels=batch["labels"]).loss

    # xllava: the cache is built once, timed, and charged to the epoch below
    with tempfile.TemporaryDirectory() as folder:  # the rows are read into memory
        started = time.perf_counter()
        cache = FeatureCache.build_or_load(base, processor.image_processor, dataset.images, Path(folder))
        cache_seconds = time.perf_counter() - started
    cached = LlavaCollator(processor.tokenizer.pad_token_id, dataset.images, processor.image_processor, cache)

    def xllava_step(m, batch):
        return llava_loss(base, supervised_logits_only=True, **batch)

    model_attention = base.config.text_config._attn_implementation

    @contextmanager
    def as_naive() -> Iterator[None]:
        base.set_attn_implementation({"text_config": model_attention})
        yield

    @contextmanager
    def as_xllava() -> Iterator[tuple[int, bool]]:
        base.set_attn_implementation({"text_config": cfg.llm_attention or model_attention})
        with lora_fused(model, enabled=cfg.lora.fused) as fused, padding_free(model, cfg.padding_free) as packed, \
                rms_norm_fused(model, enabled=cfg.fused_norm):
            yield fused, packed

    with as_xllava() as (fused, packed):
        print(f"xllava: {fused} LoRA projections fused; micro-batches {'packed' if packed else 'padded'}")
    sides = [Side("naive", pixels, naive_step, naive_epoch, across(naive_epoch), as_naive),
             Side("xllava", cached, xllava_step, grouped_epoch, across(grouped_epoch), as_xllava, packed=packed)]
    # the two sides take turns, batch by batch, so a drift in the machine's speed (5-10% over the
    # minutes a side takes on 2 shared cores) falls on both alike
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    model.train()
    for side in sides:
        run_batch(model, dataset, side, warmup, optimizer, args.micro_batch)  # untimed warm-up
    for i in range(args.steps):
        for side in sides:
            side.seconds += run_batch(model, dataset, side, side.timed[i], optimizer, args.micro_batch)
    naive, ours = (report(dataset, side) for side in sides)
    # charge the cache to the epoch: built once, for every image of the set
    with_cache = len(dataset) / (len(dataset) / ours + cache_seconds)
    print(f"feature cache: {cache_seconds:.1f} s for {len(dataset.images)} images; "
          f"xllava incl. cache over an epoch of {len(dataset)} samples: {with_cache:.2f} samples/s")
    print(f"ratio xllava/naive: {ours / naive:.2f}x  (incl. cache: {with_cache / naive:.2f}x)")


if __name__ == "__main__":
    main()
