"""Assemble an HF `LlavaForConditionalGeneration` from a causal-LM directory, a vision tower and a
fresh mlp2x_gelu projector, with `<image>` as a real special token and a matching `LlavaProcessor`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from tokenizers import AddedToken
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)

from xllava.config import ModelConfig, VisionConfig
from xllava.io import atomic_directory
from xllava.model.families import IMAGE_TOKEN, check_tokenizer, get_family
from xllava.model.towers import READOUT_FILE, load_tower, num_image_tokens


@dataclass
class Assembled:
    model: LlavaForConditionalGeneration
    processor: LlavaProcessor
    tower_pretrained: bool
    llm_dir: Path


def assemble(cfg: ModelConfig, llm_dir: Path) -> Assembled:
    family = get_family(cfg.llm.family)
    tokenizer = AutoTokenizer.from_pretrained(llm_dir)
    check_tokenizer(family, tokenizer.get_vocab(), str(llm_dir))
    llm = AutoModelForCausalLM.from_pretrained(llm_dir, dtype=torch.float32)

    tokenizer.add_special_tokens(
        {"additional_special_tokens": [AddedToken(IMAGE_TOKEN, special=True, normalized=False)]},
        replace_extra_special_tokens=False,
    )
    if getattr(tokenizer, "image_token", None) not in (None, IMAGE_TOKEN):
        # a tokenizer naming its own image token (Gemma-3: <image_soft_token>) would make LlavaProcessor
        # expand that one, here and after reloading, instead of <image>
        tokenizer.image_token = IMAGE_TOKEN
    if tokenizer.pad_token is None:
        tokenizer.pad_token = family.pad_token if family.pad_token in tokenizer.get_vocab() else tokenizer.eos_token
    tokenizer.chat_template = family.chat_template
    # New rows (for <image>) start at the mean of the old ones, so the first logits stay sane.
    if len(tokenizer) > llm.get_input_embeddings().weight.shape[0]:
        llm.resize_token_embeddings(len(tokenizer), mean_resizing=True)

    tower = load_tower(cfg.vision)
    vision_config = tower.model.config
    n_image_tokens = num_image_tokens(vision_config, tower.spec)
    config = LlavaConfig(
        text_config=llm.config,
        vision_config=vision_config,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        projector_hidden_act="gelu",
        vision_feature_select_strategy=tower.spec.select_strategy,
        vision_feature_layer=cfg.vision.feature_layer,
        image_seq_length=n_image_tokens,
        multimodal_projector_bias=True,
        tie_word_embeddings=llm.config.tie_word_embeddings,
    )
    model = LlavaForConditionalGeneration(config)
    model.model.language_model.load_state_dict(llm.model.state_dict())
    model.lm_head.load_state_dict(llm.lm_head.state_dict())
    model.model.vision_tower.load_state_dict(tower.model.state_dict())
    if cfg.projector_init == "tower_readout":
        _projector_from_readout(model, cfg.vision)
    model.tie_weights()
    model.generation_config = GenerationConfig(
        eos_token_id=[tokenizer.convert_tokens_to_ids(t) for t in family.stop_tokens],
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        do_sample=False,
    )

    processor = LlavaProcessor(
        image_processor=tower.image_processor,
        tokenizer=tokenizer,
        patch_size=vision_config.patch_size,
        vision_feature_select_strategy=tower.spec.select_strategy,
        chat_template=family.chat_template,
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=tower.spec.additional_tokens,
    )
    return Assembled(model, processor, tower.pretrained, llm_dir)


def _projector_from_readout(model: LlavaForConditionalGeneration, vision: VisionConfig) -> None:
    """Copy the tower's readout probes into the first rows of the projector's first layer (rescaled
    to the random rows' norm, so no row dominates); the rows past them stay random."""
    path = Path(vision.path or "") / READOUT_FILE
    if not vision.path or not path.is_file():
        raise FileNotFoundError(f"model.projector_init=tower_readout needs {READOUT_FILE} in the tower directory "
                                f"({vision.path}); the `tower` stage writes it")
    readout = load_file(str(path))
    linear = model.model.multi_modal_projector.linear_1
    weight, bias = readout["weight"], readout["bias"]
    if weight.shape[1] != linear.in_features:
        raise ValueError(f"{path}: readout rows have {weight.shape[1]} inputs, the tower's features {linear.in_features}")
    rows = min(len(weight), linear.out_features)
    with torch.no_grad():
        scale = linear.weight.norm(dim=1).mean() / weight[:rows].norm(dim=1).mean()
        linear.weight[:rows] = weight[:rows] * scale
        linear.bias[:rows] = bias[:rows] * scale


def save_llava(model: LlavaForConditionalGeneration, processor: LlavaProcessor, out_dir: Path) -> None:
    """Write a directory that plain transformers, vLLM and SGLang load (atomically: tmp dir, then rename)."""
    model.config.use_cache = True  # training turns the KV cache off; serving wants it on
    model.config.text_config.use_cache = True
    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)


def load_llava(
    path: Path, dtype: torch.dtype = torch.float32, attention: str | None = None
) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """The model in `dtype` (training and inference load in their own precision, not fp32 first);
    `attention` picks the LLM's kernel (sdpa, eager, flash_attention_2) at load, where the tower keeps its own."""
    extra = {"attn_implementation": {"text_config": attention}} if attention else {}
    model = LlavaForConditionalGeneration.from_pretrained(path, dtype=dtype, **extra)
    processor = LlavaProcessor.from_pretrained(path)
    return model, processor
