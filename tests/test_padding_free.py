"""Padding-free micro-batches (xllava.train.padding_free) train what padded ones train."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import Gemma3TextConfig, LlamaConfig, Qwen2Config

from tests.test_supervised_tail import IMAGE_TOKEN, TEXT, batch, llava
from xllava.config import TrainStageConfig
from xllava.train.labels import IGNORE
from xllava.train.loss import llava_loss
from xllava.train.padding_free import PACKED_SDPA, pack_rows, padding_free
from xllava.train.stage import configure_trainable


def loss_and_grads(model: torch.nn.Module, packed: bool, tail: bool, inputs: dict | None = None
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    model.zero_grad(set_to_none=True)
    with padding_free(model, enabled=packed) as on:
        assert on == packed
        loss = llava_loss(base, supervised_logits_only=tail, **(inputs or batch()))
        loss.backward()  # inside the block, as Trainer's step is: a checkpointed layer reruns here
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


@pytest.mark.parametrize("tail", [True, False])
@pytest.mark.parametrize("family", [LlamaConfig, Qwen2Config])
def test_packed_rows_give_the_padded_batch_s_loss_and_gradients(family, tail: bool) -> None:
    model = llava(family(**TEXT))
    padded_loss, padded = loss_and_grads(model, packed=False, tail=tail)
    packed_loss, packed = loss_and_grads(model, packed=True, tail=tail)
    torch.testing.assert_close(packed_loss, padded_loss, rtol=1e-5, atol=1e-6)
    assert packed.keys() == padded.keys() and len(padded) > 10
    for name in padded:
        torch.testing.assert_close(packed[name], padded[name], rtol=1e-4, atol=1e-6, msg=name)


def test_lora_with_gradient_checkpointing_trains_the_same_packed() -> None:
    model = llava(LlamaConfig(**TEXT))
    cfg = TrainStageConfig(data=["x.jsonl"], llm_mode="lora", train_projector=True)
    model, _ = configure_trainable(model, cfg)
    model.base_model.model.model.language_model.gradient_checkpointing_enable(
        gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    for module in model.modules():  # dropout would draw differently on the two sides
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    padded_loss, padded = loss_and_grads(model, packed=False, tail=True)
    packed_loss, packed = loss_and_grads(model, packed=True, tail=True)
    torch.testing.assert_close(packed_loss, padded_loss, rtol=1e-5, atol=1e-6)
    assert any("lora_A" in n for n in padded) and any("projector" in n for n in padded)
    for name in padded:
        torch.testing.assert_close(packed[name], padded[name], rtol=1e-4, atol=1e-6, msg=name)


def test_samples_do_not_see_each_other() -> None:
    """Changing one sample's tokens changes no other sample's loss terms."""
    model = llava(LlamaConfig(**TEXT))
    inputs = batch()
    one_row = {k: v[1:2] if k != "image_features" else v[1:2] for k, v in inputs.items()}
    alone, _ = loss_and_grads(model, packed=True, tail=True, inputs=one_row)
    changed = {k: v.clone() for k, v in inputs.items()}
    changed["input_ids"][0, 10:] = torch.where(changed["input_ids"][0, 10:] == IMAGE_TOKEN, IMAGE_TOKEN, 7)
    changed["labels"][0] = IGNORE
    changed["labels"][2] = IGNORE  # only row 1 is scored
    scored, _ = loss_and_grads(model, packed=True, tail=True, inputs=changed)
    torch.testing.assert_close(scored, alone, rtol=1e-5, atol=1e-6)


def test_pack_rows_keeps_real_tokens_and_restarts_positions() -> None:
    inputs = batch()
    embeds = torch.arange(3 * 20, dtype=torch.float32).view(3, 20, 1)
    row = pack_rows(embeds, inputs["labels"], inputs["attention_mask"], IGNORE)
    assert row.bounds == (0, 20, 33, 50)
    assert row.embeds.shape == (1, 50, 1)
    assert row.position_ids[0, :3].tolist() == [0, 1, 2] and row.position_ids[0, 20:22].tolist() == [0, 1]
    assert row.sample_of.tolist() == [0] * 20 + [1] * 13 + [2] * 17
    # each sample's last token predicts nothing: the next sample's first token is not its target
    assert row.targets[19] == IGNORE and row.targets[32] == IGNORE and row.targets[49] == IGNORE
    assert torch.equal(row.targets[:19], inputs["labels"][0, 1:])


def test_only_full_causal_sdpa_decoders_pack_and_the_config_is_restored() -> None:
    model = llava(LlamaConfig(**TEXT))
    decoder = model.model.language_model
    with padding_free(model) as on:
        assert on and decoder.config._attn_implementation == PACKED_SDPA
    assert decoder.config._attn_implementation == "sdpa"
    with padding_free(llava(LlamaConfig(**TEXT), attn="eager")) as on:
        assert not on  # eager keeps padded batches
    sliding = Gemma3TextConfig(**TEXT, head_dim=8, sliding_window=4)
    with padding_free(llava(sliding)) as on:
        assert not on  # a sliding window would need the window inside each sample's slice


def test_a_stage_trains_the_same_packed_and_padded(fast_run: Path, tmp_path: Path) -> None:
    """Stage 2 through the Trainer with sdpa attention: the same loss at every step either way, and
    the stage reports whether it packed."""
    from tests.conftest import fast_recipe
    from xllava.train.stage import train_stage

    losses, packed = {}, {}
    for on in (True, False):
        recipe = fast_recipe(fast_run, "instruct.llm_attention=sdpa", f"instruct.padding_free={on}")
        result = train_stage(recipe.instruct, fast_run / "align" / "model", tmp_path / f"packed-{on}",
                             fast_run, "instruct")
        losses[on] = [h["loss"] for h in result.log_history if "loss" in h]
        packed[on] = result.padding_free
    assert packed == {True: True, False: False}
    assert len(losses[True]) >= 2 and losses[True][-1] != losses[True][0]
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)
