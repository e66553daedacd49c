"""Checkpoints that hold the trainable weights only, as LLaVA's stage 1 saves only the projector.

Trainer writes the whole model into every checkpoint, and DeepSpeed writes it a second time into its
own: at 13B with a frozen LLM that is two copies of 26 GB every `save_steps` for a projector of
21M weights. Where weights are frozen (and peft, which already saves only adapters and
modules_to_save, is not in use) a checkpoint here holds:

- `trainable.safetensors`: every parameter that trains, by its name in the model (gathered from
  ZeRO-3 partitions first), written by rank 0; resume loads it over the stage's initial weights,
  which are the frozen weights' only source anyway;
- under DeepSpeed, its engine checkpoint with `exclude_frozen_parameters` (optimizer states and the
  trainable weights), read back non-strictly since the frozen weights are absent on purpose.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

TRAINABLE_FILE = "trainable.safetensors"


def saves_trainable_only(model: torch.nn.Module) -> bool:
    """A model with frozen weights that peft does not already save sparingly."""
    if hasattr(model, "peft_config"):
        return False
    return any(not p.requires_grad for p in model.parameters())


def save_trainable(model: torch.nn.Module, folder: Path, write: bool) -> None:
    """Every rank calls this (ZeRO-3's gather is a collective); the rank with `write` writes."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    partitioned = [p for _, p in named if hasattr(p, "ds_id")]
    gather = nullcontext()
    if partitioned:
        import deepspeed

        gather = deepspeed.zero.GatheredParameters(partitioned, modifier_rank=None)
    with gather:
        if write:
            folder.mkdir(parents=True, exist_ok=True)
            state = {n: p.detach().to("cpu").contiguous().clone() for n, p in named}
            save_file(state, str(folder / TRAINABLE_FILE), metadata={"format": "pt", "content": "trainable"})


def load_trainable(model: torch.nn.Module, folder: Path) -> bool:
    """Load a checkpoint's trainable weights into `model`; False where the checkpoint has none.
    Every weight that trains must be in the file, and nothing else."""
    path = Path(folder) / TRAINABLE_FILE
    if not path.is_file():
        return False
    state = load_file(str(path))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    if set(state) != trainable:
        missing, extra = sorted(trainable - set(state)), sorted(set(state) - trainable)
        raise RuntimeError(f"{path}: holds other weights than this stage trains "
                           f"(missing {missing[:3]}, unexpected {extra[:3]}): a checkpoint of another stage?")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in state.items():
            params[name].copy_(tensor.to(params[name].dtype))
    return True


@contextmanager
def deepspeed_resume_without_frozen() -> Iterator[None]:
    """Trainer resumes a non-peft model from a DeepSpeed checkpoint strictly; one saved without its
    frozen weights lacks them by design, so the module state is read non-strictly."""
    import transformers.trainer as trainer_module

    original = trainer_module.deepspeed_load_checkpoint

    def nonstrict(engine, path, load_module_strict=True):
        return original(engine, path, load_module_strict=False)

    trainer_module.deepspeed_load_checkpoint = nonstrict
    try:
        yield
    finally:
        trainer_module.deepspeed_load_checkpoint = original
