"""A vision tower's patch embedding computed as one matrix product while the tower trains.

CLIP's and SigLIP's patch embedding is a Conv2d whose kernel equals its stride: every output is a
dot product of one non-overlapping patch with the kernel, so the whole layer is one matmul of the
flattened patches with the flattened kernel. On 2 CPU cores (96-pixel images, 32-pixel patches,
batch 64) oneDNN's convolution took 33-42 ms a forward and backward, the matmul 20-22 ms
(`python -m xllava.train.patch_matmul` measures both); a whole tower step went from ~106 to ~91 ms.
The function is the same up to float rounding (tests/test_patch_matmul.py).

Only the forward changes: the module is swapped for a subclass that shares the convolution's weight
and bias, and swapped back on exit, so optimizer, state dict and the saved model are untouched.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F


class PatchMatmulConv2d(nn.Conv2d):
    """A Conv2d with kernel = stride, no padding, dilation or groups, computed as a matmul."""

    @staticmethod
    def applies_to(conv: nn.Module) -> bool:
        return (
            type(conv) is nn.Conv2d
            and conv.kernel_size == conv.stride
            and conv.padding in ((0, 0), "valid")
            and conv.dilation == (1, 1)
            and conv.groups == 1
        )

    @classmethod
    def sharing(cls, conv: nn.Conv2d) -> PatchMatmulConv2d:
        """A module with `conv`'s own weight and bias parameters (not copies)."""
        twin = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                   bias=conv.bias is not None, device="meta")
        twin.weight = conv.weight
        twin.bias = conv.bias
        return twin

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        (ph, pw), (batch, channels, height, width) = self.kernel_size, pixels.shape
        rows, cols = height // ph, width // pw  # a convolution drops the remainder too
        patches = (
            pixels[:, :, : rows * ph, : cols * pw]
            .reshape(batch, channels, rows, ph, cols, pw)
            .permute(0, 2, 4, 1, 3, 5)
            .reshape(batch, rows * cols, channels * ph * pw)
        )
        out = F.linear(patches, self.weight.reshape(self.out_channels, -1), self.bias)
        return out.transpose(1, 2).reshape(batch, self.out_channels, rows, cols)  # the conv's layout


@contextmanager
def patches_as_matmul(model: nn.Module) -> Iterator[int]:
    """Within the block, every `patch_embedding` convolution of `model` that qualifies runs as a
    matmul; yields how many were swapped (0: the tower keeps its convolution)."""
    swapped: list[tuple[nn.Module, str, nn.Conv2d]] = []
    for name, module in list(model.named_modules()):
        if name.rsplit(".", 1)[-1] == "patch_embedding" and PatchMatmulConv2d.applies_to(module):
            parent = model.get_submodule(name.rpartition(".")[0])
            swapped.append((parent, name.rsplit(".", 1)[-1], module))
    try:
        for parent, attr, conv in swapped:
            setattr(parent, attr, PatchMatmulConv2d.sharing(conv))
        yield len(swapped)
    finally:
        for parent, attr, conv in swapped:
            setattr(parent, attr, conv)


def _bench(steps: int = 30) -> None:
    """Forward and backward of the tiny recipe's patch embedding, convolution against matmul."""
    conv = nn.Conv2d(3, 192, kernel_size=32, stride=32, bias=False)
    pixels = torch.randn(64, 3, 96, 96)
    for name, module in (("conv2d", conv), ("matmul", PatchMatmulConv2d.sharing(conv))) * 2:
        for i in range(steps + 3):
            if i == 3:
                started = time.perf_counter()
            module(pixels).square().mean().backward()
        print(f"{name}: {(time.perf_counter() - started) / steps * 1e3:.1f} ms per forward and backward")


if __name__ == "__main__":
    _bench()
