"""Published architectures, as an explicit table, and exact parameter counts of the LLaVA they make.

A plan must work before any weights are downloaded, so the model is built from config classes on
the meta device (shapes only, no memory) and its parameters are counted there: the count is the
one `xllava.model.assemble` would produce, including the rows it adds for `<image>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, PretrainedConfig

from xllava.config import LoraConfig, Recipe
from xllava.model.towers import get_tower, num_image_tokens

# Llama-2 (Touvron et al. 2023, table 1 / the released config.json files)
LLM_ARCHS: dict[str, dict] = {
    "llama-2-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096),
    "llama-2-13b": dict(hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40,
                        num_key_value_heads=40, vocab_size=32000, max_position_embeddings=4096),
}

# tokens assemble() adds to the LLM's tokenizer: <image> (the pad token of each family already exists)
ADDED_TOKENS = 1


@dataclass(frozen=True)
class Counts:
    """Parameters of each part of the assembled LLaVA."""

    llm: int  # decoder + embeddings + final norm + LM head
    decoder_linear: int  # the q,k,v,o,gate,up,down weights of all layers (the matmul FLOPs)
    largest_layer: int  # one decoder layer (ZeRO-3 gathers about one at a time)
    vision: int
    vision_hidden: int  # width of the features the projector reads (what the feature cache stores)
    projector: int
    lora: int  # adapters for the LoRA settings passed to count()
    # (module name, in, out, how many) of the LLM's linears: what LoRA settings attach to
    linears: tuple[tuple[str, int, int, int], ...]
    n_layers: int
    hidden: int
    kv_hidden: int
    intermediate: int
    vocab: int
    image_tokens: int

    @property
    def total(self) -> int:
        return self.llm + self.vision + self.projector


def text_config(recipe: Recipe, llm_arch: str | None, vocab_size: int | None) -> tuple[PretrainedConfig, str]:
    """The LLM config: the recipe's model directory when it exists, else a named architecture."""
    llm = recipe.model.llm
    if llm.path and (Path(llm.path) / "config.json").exists():
        config, source = AutoConfig.from_pretrained(llm.path), f"{llm.path}/config.json"
    elif llm.source == "scratch":
        s = llm.scratch
        config = LlamaConfig(vocab_size=s.vocab_size, hidden_size=s.hidden_size, intermediate_size=s.intermediate_size,
                             num_hidden_layers=s.num_hidden_layers, num_attention_heads=s.num_attention_heads,
                             num_key_value_heads=s.num_key_value_heads,
                             max_position_embeddings=s.max_position_embeddings)
        source = "model.llm.scratch"
    elif llm_arch is not None:
        if llm_arch not in LLM_ARCHS:
            raise ValueError(f"unknown --llm-arch {llm_arch!r}; known: {sorted(LLM_ARCHS)}")
        config, source = LlamaConfig(**LLM_ARCHS[llm_arch]), f"--llm-arch {llm_arch}"
    else:
        raise ValueError(
            f"model.llm.path {llm.path!r} has no config.json here; name the architecture with --llm-arch "
            f"(known: {sorted(LLM_ARCHS)})"
        )
    if vocab_size is not None:
        config.vocab_size = vocab_size
        source += f", vocab {vocab_size}"
    return config, source


def vision_config(recipe: Recipe) -> tuple[PretrainedConfig, str]:
    """The tower config: the recipe's tower directory when it exists, else the recipe's own fields."""
    v = recipe.model.vision
    spec = get_tower(v.tower)
    if v.path and (Path(v.path) / "config.json").exists():
        return spec.config_class.from_pretrained(v.path), f"{v.path}/config.json"
    config = spec.config_class(image_size=v.image_size, patch_size=v.patch_size, hidden_size=v.hidden_size,
                               intermediate_size=v.intermediate_size, num_hidden_layers=v.num_hidden_layers,
                               num_attention_heads=v.num_attention_heads)
    return config, "model.vision fields"


def llm_linears(model: LlavaForConditionalGeneration) -> tuple[tuple[str, int, int, int], ...]:
    shapes: dict[tuple[str, int, int], int] = {}
    for name, module in model.model.language_model.named_modules():
        if isinstance(module, torch.nn.Linear):
            key = (name.rsplit(".", 1)[-1], module.in_features, module.out_features)
            shapes[key] = shapes.get(key, 0) + 1
    return tuple((name, i, o, n) for (name, i, o), n in sorted(shapes.items()))


def lora_params(linears: tuple[tuple[str, int, int, int], ...], lora: LoraConfig) -> int:
    """What peft adds: r x (in + out) per targeted linear of the LLM (xllava targets only the LLM)."""
    return sum(n * lora.r * (i + o) for name, i, o, n in linears if name in lora.target_modules)


def count(recipe: Recipe, llm_arch: str | None = None, vocab_size: int | None = None,
          lora: LoraConfig | None = None) -> tuple[Counts, dict[str, str]]:
    text, text_source = text_config(recipe, llm_arch, vocab_size)
    vision, vision_source = vision_config(recipe)
    spec = get_tower(recipe.model.vision.tower)
    text.vocab_size += ADDED_TOKENS
    image_tokens = num_image_tokens(vision, spec)
    config = LlavaConfig(text_config=text, vision_config=vision, projector_hidden_act="gelu",
                         vision_feature_select_strategy=spec.select_strategy,
                         vision_feature_layer=recipe.model.vision.feature_layer, image_seq_length=image_tokens,
                         multimodal_projector_bias=True, tie_word_embeddings=text.tie_word_embeddings)
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(config)

    def n(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())  # parameters() yields a tied weight once

    lm = model.model.language_model
    decoder_linear = sum(
        m.weight.numel() for m in lm.layers.modules() if isinstance(m, torch.nn.Linear)
    )
    head = 0 if text.tie_word_embeddings else model.lm_head.weight.numel()
    linears = llm_linears(model)
    counts = Counts(
        llm=n(lm) + head,
        decoder_linear=decoder_linear,
        largest_layer=max(n(layer) for layer in lm.layers),
        vision=n(model.model.vision_tower),
        vision_hidden=model.model.multi_modal_projector.linear_1.in_features,
        projector=n(model.model.multi_modal_projector),
        lora=lora_params(linears, lora) if lora is not None else 0,
        linears=linears,
        n_layers=text.num_hidden_layers,
        hidden=text.hidden_size,
        kv_hidden=text.num_key_value_heads * (text.hidden_size // text.num_attention_heads),
        intermediate=text.intermediate_size,
        vocab=text.vocab_size,
        image_tokens=image_tokens,
    )
    return counts, {"llm": text_source, "vision": vision_source}
