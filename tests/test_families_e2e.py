"""Each family end to end: a random-weight small model of its real architecture class with its real
tokenizer, the tokenizer expanded for Korean, assembled into LLaVA with a tower of CLIP ViT-L/14-336's
or SigLIP so400m/14-384's geometry (576 and 729 image tokens), one stage-2 step, saved, and reloaded
by plain transformers, whose chat template + greedy generate give xllava's own answer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from tests.real_tokenizers import real_tokenizer_dir
from xllava.config import LLMConfig, ModelConfig, TrainStageConfig
from xllava.infer import answer_batch
from xllava.model.assemble import assemble, load_llava, save_llava
from xllava.model.families import get_family
from xllava.model.towers import shaped_vision_config
from xllava.train.stage import train_stage
from xllava.vocab.config import VocabConfig
from xllava.vocab.ids import next_free_id
from xllava.vocab.stage import corpus_texts, run_vocab_stage, target_pieces

# family -> (real tokenizer, architecture classes, tower shape)
ARCHS = {
    "llama3": ("llama3", LlamaConfig, LlamaForCausalLM, "clip-vit-large-patch14-336"),
    "qwen2": ("qwen3", Qwen2Config, Qwen2ForCausalLM, "siglip-so400m-patch14-384"),
    "qwen3": ("qwen3", Qwen3Config, Qwen3ForCausalLM, "clip-vit-large-patch14-336"),
    "gemma3": ("gemma3", Gemma3TextConfig, Gemma3ForCausalLM, "siglip-so400m-patch14-384"),
    "mistral": ("mistral", MistralConfig, MistralForCausalLM, "siglip-so400m-patch14-384"),
    "vicuna_v1": ("llama2", LlamaConfig, LlamaForCausalLM, "clip-vit-large-patch14-336"),
}
IMAGE_TOKENS = {"clip-vit-large-patch14-336": 576, "siglip-so400m-patch14-384": 729}
QUESTIONS = ["이 그림에는 무엇이 있나요?", "What colour is the square?"]


@pytest.fixture(scope="module")
def korean_pieces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Korean pieces learned once (SentencePiece on a slice of the shipped corpus) for every family."""
    out = tmp_path_factory.mktemp("pieces")
    cfg = VocabConfig(n_pieces=1500, max_train_chars=300_000)
    target_pieces(cfg, corpus_texts(cfg)[0], out)
    return out / "pieces.txt"


def tiny_lm(family: str, tok_dir: Path, out: Path) -> Path:
    """A random-weight causal LM of the family's real class, two narrow layers, with the real tokenizer."""
    tok_key, config_class, model_class, _ = ARCHS[family]
    tok = AutoTokenizer.from_pretrained(tok_dir)
    base_json = json.loads((tok_dir / "tokenizer.json").read_text(encoding="utf-8"))
    fam = get_family(family)
    config = config_class(
        vocab_size=next_free_id(base_json), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=2048,
        bos_token_id=tok.convert_tokens_to_ids(fam.bos_token) if fam.bos_token else None,
        eos_token_id=tok.convert_tokens_to_ids(fam.eos_token), pad_token_id=tok.convert_tokens_to_ids(fam.pad_token),
    )
    torch.manual_seed(0)
    model = model_class(config)
    model.save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(tok_dir / name, out / name)
    return out


def image_files(folder: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        path = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (400, 360, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def plain_transformers_answers(model_dir: Path, images: list[Path]) -> list[tuple[str, int]]:
    """Greedy answers as a user of plain transformers gets them (no xllava call)."""
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    out = []
    for image, question in zip(images, QUESTIONS, strict=True):
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
        inputs = processor(images=[Image.open(image).convert("RGB")], text=[prompt], return_tensors="pt")
        ids = model.generate(**inputs, max_new_tokens=6, do_sample=False)[0, inputs["input_ids"].shape[1]:]
        out.append((processor.decode(ids, skip_special_tokens=True).strip(), len(ids)))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(ARCHS))
def test_family_end_to_end(family: str, korean_pieces: Path, tmp_path: Path) -> None:
    tok_key, _, model_class, shape = ARCHS[family]
    tok_dir = real_tokenizer_dir(tok_key)
    llm = tiny_lm(family, tok_dir, tmp_path / "llm")
    vocab = run_vocab_stage(VocabConfig(pieces_file=str(korean_pieces), max_added=300, eval_languages=["ko", "en"],
                                       eval_limit=20), llm, tmp_path / "vocab")
    assert vocab["added"] > 0 and vocab["unreachable"] == 0
    expanded = Path(vocab["model_dir"])

    vision = shaped_vision_config(shape, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                  num_attention_heads=2)
    built = assemble(ModelConfig(llm=LLMConfig(source="hf", path=str(expanded), family=family), vision=vision),
                     expanded)
    assert built.model.config.image_seq_length == IMAGE_TOKENS[shape]
    assert built.model.config.vision_feature_layer == -2
    assert type(built.model.model.language_model).__name__ == model_class.__name__.replace("ForCausalLM", "Model") \
        or family == "gemma3"
    init_dir = tmp_path / "init"
    save_llava(built.model, built.processor, init_dir)

    images = image_files(tmp_path)
    records = [{"id": f"r{i}", "image": p.name, "conversations": [
        {"from": "human", "value": f"<image>\n{q}"}, {"from": "gpt", "value": a}]}
        for i, (p, q, a) in enumerate(zip(images, QUESTIONS, ["빨간 사각형이 있습니다.", "It is red."], strict=True))]
    (tmp_path / "data.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    cfg = TrainStageConfig(data=["data.json"], max_steps=1, batch_size=2, llm_mode="full", lr=1e-3,
                           max_length=1024, feature_cache=False, logging_steps=1)
    result = train_stage(cfg, init_dir, tmp_path / "instruct", tmp_path, "instruct")
    assert result.samples == 2 and result.supervised_tokens > 0

    model, processor = load_llava(result.model_dir)
    ours = answer_batch(model, processor, images[:1], QUESTIONS[:1], max_new_tokens=6)
    ours += answer_batch(model, processor, images[1:], QUESTIONS[1:], max_new_tokens=6)
    plain = plain_transformers_answers(result.model_dir, images)
    assert [text for text, _ in plain] == ours
    assert all(n > 0 for _, n in plain)
