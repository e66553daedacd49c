"""The sparse last layer (xllava.train.supervised_tail) gives the full forward's loss and gradients."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    MistralConfig,
    Qwen2Config,
)

from xllava.config import TrainStageConfig
from xllava.train.labels import IGNORE
from xllava.train.loss import llava_loss, mask_for_decoder
from xllava.train.stage import configure_trainable
from xllava.train.supervised_tail import supports_supervised_tail

IMAGE_TOKEN, N_IMAGE = 99, 4
TEXT = dict(vocab_size=100, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)


def llava(text_config, attn: str = "sdpa") -> LlavaForConditionalGeneration:
    torch.manual_seed(0)
    vision = CLIPVisionConfig(image_size=32, patch_size=16, hidden_size=16, intermediate_size=32,
                              num_hidden_layers=1, num_attention_heads=2)
    config = LlavaConfig(vision_config=vision, text_config=text_config, image_token_id=IMAGE_TOKEN,
                         image_seq_length=N_IMAGE, vision_feature_select_strategy="default")
    config._attn_implementation = attn
    config.text_config._attn_implementation = attn
    return LlavaForConditionalGeneration(config).float()


def batch() -> dict[str, torch.Tensor]:
    """Three right-padded rows of different lengths, the image in different places, labels in spans."""
    gen = torch.Generator().manual_seed(1)
    lengths, image_at = [20, 13, 17], [2, 6, 0]
    ids = torch.zeros(3, 20, dtype=torch.long)
    labels = torch.full((3, 20), IGNORE)
    attention = torch.zeros(3, 20, dtype=torch.long)
    for row, (n, at) in enumerate(zip(lengths, image_at, strict=True)):
        ids[row, :n] = torch.randint(1, IMAGE_TOKEN, (n,), generator=gen)
        ids[row, at : at + N_IMAGE] = IMAGE_TOKEN
        attention[row, :n] = 1
        labels[row, n - 5 : n - 2] = ids[row, n - 5 : n - 2]  # one answer span
        labels[row, n - 1] = ids[row, n - 1]  # and the final token
    labels[1, 11:13] = IGNORE  # a row whose last real token is not labelled
    features = torch.randn(3, N_IMAGE, 16, generator=gen)
    return {"input_ids": ids, "labels": labels, "attention_mask": attention, "image_features": features}


def loss_and_grads(model: torch.nn.Module, tail: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    model.zero_grad(set_to_none=True)
    decoder = base.model.language_model
    if not tail:  # the reference: hide the layout from the sparse path
        layer = decoder.layers[-1]
        original = type(layer)
        layer.__class__ = type("Reference" + original.__name__, (original,), {})
    try:
        loss = llava_loss(base, supervised_logits_only=True, **batch())
    finally:
        if not tail:
            layer.__class__ = original
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


def assert_same(model: torch.nn.Module) -> None:
    assert supports_supervised_tail(
        (model.get_base_model() if hasattr(model, "get_base_model") else model).model.language_model
    )
    sparse_loss, sparse = loss_and_grads(model, tail=True)
    full_loss, full = loss_and_grads(model, tail=False)
    torch.testing.assert_close(sparse_loss, full_loss, rtol=1e-5, atol=1e-6)
    assert sparse.keys() == full.keys() and len(full) > 0
    for name in full:
        torch.testing.assert_close(sparse[name], full[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("text_config", [LlamaConfig(**TEXT), Qwen2Config(**TEXT)], ids=["llama", "qwen2"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_full_training_matches_the_full_forward(text_config, attn: str) -> None:
    model = llava(copy.deepcopy(text_config), attn)
    model.train()
    model.requires_grad_(True)
    model.model.vision_tower.requires_grad_(False)
    assert_same(model)


def test_lora_training_matches_the_full_forward() -> None:
    model = llava(LlamaConfig(**TEXT))
    cfg = TrainStageConfig(data=["x.jsonl"], llm_mode="lora", lora={"r": 4, "alpha": 8, "dropout": 0.0})
    model, _ = configure_trainable(model, cfg)
    model.train()
    assert_same(model)


def test_other_layouts_take_the_full_forward() -> None:
    """A sliding window changes the mask; an unknown layout or backend is not guessed at."""
    windowed = llava(MistralConfig(**TEXT, sliding_window=8))
    assert not supports_supervised_tail(windowed.model.language_model)
    qwen_window = llava(Qwen2Config(**TEXT, use_sliding_window=True, sliding_window=8, max_window_layers=0))
    assert not supports_supervised_tail(qwen_window.model.language_model)
    flash = llava(LlamaConfig(**TEXT))
    flash.model.language_model.config._attn_implementation = "flash_attention_2"
    assert not supports_supervised_tail(flash.model.language_model)
    # and the loss of such a model still runs, through the full forward
    loss = llava_loss(windowed, supervised_logits_only=True, **batch())
    assert torch.isfinite(loss)


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    """The hook that stops the decoder before its last layer sits outside the checkpointed forward."""

    def sparse(checkpointing: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model = llava(LlamaConfig(**TEXT))
        model.train()
        model.requires_grad_(True)
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return loss_and_grads(model, tail=True)

    plain_loss, plain = sparse(False)
    checkpointed_loss, checkpointed = sparse(True)
    torch.testing.assert_close(checkpointed_loss, plain_loss)
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], msg=name)


def reference_loss(model: LlavaForConditionalGeneration, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """HF's decoder with the padding mask, the LM head at every position: nothing skipped."""
    inner, ids = model.model, inputs["input_ids"]
    embeds = inner.get_input_embeddings()(ids)
    slots = (ids == IMAGE_TOKEN).unsqueeze(-1)
    embeds = embeds.masked_scatter(slots, inner.multi_modal_projector(inputs["image_features"]))
    hidden = inner.language_model(inputs_embeds=embeds, attention_mask=inputs["attention_mask"]).last_hidden_state
    logits = model.lm_head(hidden[:, :-1])
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), inputs["labels"][:, 1:].flatten(),
                                             ignore_index=IGNORE)


def left_padded(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {k: v.clone() for k, v in inputs.items()}
    for row, n in enumerate(inputs["attention_mask"].sum(1).tolist()):
        for key in ("input_ids", "labels", "attention_mask"):
            out[key][row] = inputs[key][row].roll(inputs[key].shape[1] - n)
    return out


@pytest.mark.parametrize("tail", [True, False], ids=["sparse-tail", "full-forward"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_right_padding_runs_without_its_mask_and_left_padding_keeps_it(tail: bool, attn: str) -> None:
    model = llava(LlamaConfig(**TEXT), attn)
    right = batch()
    assert mask_for_decoder(right["attention_mask"]) is None
    left = left_padded(right)
    assert mask_for_decoder(left["attention_mask"]) is left["attention_mask"]
    for inputs in (right, left):
        torch.testing.assert_close(llava_loss(model, supervised_logits_only=tail, **inputs),
                                   reference_loss(model, inputs), rtol=1e-5, atol=1e-6)
    # the reference sees the mask: dropping it on the left-padded batch would change the loss
    unmasked = {**left, "attention_mask": torch.ones_like(left["attention_mask"])}
    assert not torch.allclose(reference_loss(model, unmasked), reference_loss(model, left))


def test_a_label_on_a_pad_is_refused() -> None:
    inputs = batch()
    inputs["labels"][1, 15] = 7  # row 1 has 13 real tokens
    with pytest.raises(ValueError, match="padded position"):
        llava_loss(llava(LlamaConfig(**TEXT)), **inputs)


@pytest.mark.parametrize("tail", [True, False])
def test_bf16_autocast_over_fp32_weights(tail: bool) -> None:
    """`precision: bf16` outside DeepSpeed: fp32 weights under autocast. The projector's output is
    bf16 there and must be scattered into the fp32 embeddings, then train like the fp32 loss."""
    model = llava(LlamaConfig(**TEXT))
    reference = llava_loss(model, supervised_logits_only=tail, **batch())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = llava_loss(model, supervised_logits_only=tail, **batch())
    loss.backward()
    assert torch.isfinite(loss) and abs(loss.item() - reference.item()) < 0.05 * reference.item()
    assert model.model.multi_modal_projector.linear_1.weight.grad is not None
