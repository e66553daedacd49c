"""LLaVA-1.5's length grouping (`length_grouping: llava`): every sample once per epoch, each global
batch a random draw, and within it the micro-batches (ranks x accumulation steps) balanced in tokens."""

from __future__ import annotations

import torch

from xllava.train.stage import GlobalLengthGroupedSampler, llava_grouped_indices


def test_llava_grouping_balances_the_micro_batches() -> None:
    lengths = [(i * 61) % 997 + 20 for i in range(1000)]
    global_batch, per_device = 64, 8
    order = llava_grouped_indices(lengths, global_batch, per_device, torch.Generator().manual_seed(0))
    assert sorted(order) == list(range(1000))  # a permutation
    spreads, random_spreads = [], []
    for start in range(0, 1000 - global_batch + 1, global_batch):
        batch = order[start : start + global_batch]
        micro = [sum(lengths[i] for i in batch[m : m + per_device]) for m in range(0, global_batch, per_device)]
        spreads.append(max(micro) - min(micro))
        shuffled = [batch[i] for i in torch.randperm(global_batch, generator=torch.Generator().manual_seed(start))]
        plain = [sum(lengths[i] for i in shuffled[m : m + per_device]) for m in range(0, global_batch, per_device)]
        random_spreads.append(max(plain) - min(plain))
    # the same samples per global batch, far closer token counts per micro-batch than dealt at random
    assert sum(spreads) * 5 < sum(random_spreads)

    # the global batches themselves are random draws, not sorted by length (LLaVA keeps the data order random)
    means = [sum(lengths[i] for i in order[s : s + global_batch]) / global_batch for s in range(0, 960, global_batch)]
    assert means != sorted(means) and means != sorted(means, reverse=True)


def test_sampler_takes_the_llava_mode_and_is_the_same_on_every_rank() -> None:
    lengths = [(i * 37) % 101 for i in range(200)]
    a = GlobalLengthGroupedSampler(32, lengths, seed=5, per_device=4, mode="llava")
    b = GlobalLengthGroupedSampler(32, lengths, seed=5, per_device=4, mode="llava")
    assert list(a) == list(b) == llava_grouped_indices(lengths, 32, 4, torch.Generator().manual_seed(5))
    a.set_epoch(1)
    assert list(a) != list(b) and sorted(a) == list(range(200))
