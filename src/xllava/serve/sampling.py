"""Choosing the next token of each row: greedy, or temperature + nucleus (top_p) sampling with a
per-request seed, so a request's answer does not depend on which others share its batch."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Sampling:
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    seed: int | None = None
    generator: torch.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.generator = torch.Generator()
        if self.seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(self.seed)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 1e-5


def next_tokens(logits: torch.Tensor, rows: list[Sampling]) -> list[int]:
    """logits [B, V] (last position of each row) to one token id per row."""
    logits = logits.float()
    chosen = logits.argmax(dim=-1).tolist()
    for i, s in enumerate(rows):
        if s.greedy:
            continue
        probs = torch.softmax(logits[i] / s.temperature, dim=-1)
        if s.top_p < 1.0:
            sorted_p, order = probs.sort(descending=True)
            # keep the smallest head whose mass reaches top_p (the first token always stays)
            drop = sorted_p.cumsum(0) - sorted_p >= s.top_p
            sorted_p[drop] = 0.0
            probs = torch.zeros_like(probs).scatter(0, order, sorted_p)
        chosen[i] = int(torch.multinomial(probs, 1, generator=s.generator))
    return chosen
