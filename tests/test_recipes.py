"""Every shipped recipe validates; overrides and errors behave."""

from __future__ import annotations

from pathlib import Path

import pytest

from xllava.config import load_recipe

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))
PLANS = [p for p in RECIPES if p.stem == "ablation"]  # an ablation plan, not a recipe
RECIPES = [p for p in RECIPES if p not in PLANS]


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_shipped_recipe_validates(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.name == path.stem
    assert recipe.stages


@pytest.mark.parametrize("path", PLANS, ids=lambda p: p.name)
def test_shipped_ablation_plan_validates_with_every_variant(path: Path) -> None:
    from xllava.ablation import load_plan, variant_recipe

    plan, base = load_plan(path)
    recipes = [variant_recipe(plan, base, v) for v in plan.variants]
    assert len(recipes) == 6
    assert {("vocab" in r.stages, "lm" in r.stages) for r in recipes} == {(False, False), (True, False), (True, True)}


def test_dotted_override_is_typed() -> None:
    recipe = load_recipe(RECIPES[0], ["instruct.lr=3e-4", "world.languages=[en, ko]"])
    assert recipe.instruct.lr == 3e-4
    assert recipe.world["languages"] == ["en", "ko"]


def test_typo_is_an_error_naming_the_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ninstruct:\n  learning_rate: 1.0\n")
    with pytest.raises(ValueError) as err:
        load_recipe(bad)
    assert "bad.yaml" in str(err.value) and "learning_rate" in str(err.value)


def test_unknown_stage_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown stage"):
        load_recipe(RECIPES[0], ["stages=[world, pretrain]"])


def test_scratch_llm_honours_its_init_std(tmp_path: Path) -> None:
    """The tiny recipe relies on a wider init than HF's 0.02; the built weights must carry it."""
    import torch
    from transformers import AutoModelForCausalLM

    from xllava.config import LLMConfig, ScratchLLMConfig
    from xllava.model.llm_sources import build_scratch_llm

    texts = ["a red ball is at the top left", "빨간 공은 왼쪽 위에 있어요"] * 50
    stds = {}
    for std in (0.02, 0.08):
        scratch = ScratchLLMConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                   num_attention_heads=4, num_key_value_heads=4, initializer_range=std)
        out = build_scratch_llm(LLMConfig(source="scratch", scratch=scratch), tmp_path / str(std), texts)
        model = AutoModelForCausalLM.from_pretrained(out)
        stds[std] = torch.cat([model.model.layers[0].self_attn.q_proj.weight.flatten(),
                               model.model.layers[0].mlp.up_proj.weight.flatten()]).std().item()
    assert abs(stds[0.02] - 0.02) < 0.004 and abs(stds[0.08] - 0.08) < 0.01


def test_scratch_llm_init_depends_on_its_seed_only(tmp_path: Path) -> None:
    """Same recipe, same weights, whatever ran before in the process; another seed, other weights."""
    import torch
    from safetensors.torch import load_file

    from xllava.config import LLMConfig, ScratchLLMConfig
    from xllava.model.llm_sources import build_scratch_llm

    texts = ["a red ball is at the top left", "빨간 공은 왼쪽 위에 있어요"] * 50

    def weights(name: str, seed: int) -> dict[str, torch.Tensor]:
        torch.rand(int(torch.randint(1, 50, ()).item()))  # disturb the global RNG as other work would
        scratch = ScratchLLMConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                   num_attention_heads=2, num_key_value_heads=2, seed=seed)
        out = build_scratch_llm(LLMConfig(source="scratch", scratch=scratch), tmp_path / name, texts)
        return load_file(str(out / "model.safetensors"))

    a, b, c = weights("a", 0), weights("b", 0), weights("c", 1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["model.layers.0.self_attn.q_proj.weight"], c["model.layers.0.self_attn.q_proj.weight"])


def test_built_base_llm_is_rebuilt_when_its_source_changes(tmp_path: Path) -> None:
    """A run dir keeps base/llm across runs: a new seed or new training text must not reuse the old
    one (a seed sweep in one run dir otherwise trains every seed from the first one's weights)."""
    from safetensors.torch import load_file

    from xllava.config import LLMConfig, ScratchLLMConfig
    from xllava.model.llm_sources import materialise_llm

    texts = ["a red ball is at the top left", "빨간 공은 왼쪽 위에 있어요"] * 50
    out = tmp_path / "llm"

    def build(seed: int, corpus: list[str]) -> tuple[dict, str, int]:
        scratch = ScratchLLMConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                   num_attention_heads=2, num_key_value_heads=2, seed=seed)
        materialise_llm(LLMConfig(source="scratch", scratch=scratch), out, iter(corpus))
        weights = load_file(str(out / "model.safetensors"))
        return weights, (out / "tokenizer.json").read_text(), (out / "model.safetensors").stat().st_mtime_ns

    first, vocab, built = build(0, texts)
    assert build(0, texts)[2] == built  # same source: kept, not rebuilt
    other, _, _ = build(1, texts)
    key = "model.layers.0.self_attn.q_proj.weight"
    assert not (other[key] == first[key]).all()
    _, new_vocab, _ = build(1, ["the blue kite is below the green tree"] * 100)
    assert new_vocab != vocab


@pytest.mark.parametrize("family", ["chatml", "llama2"])
def test_scratch_tokenizer_learns_the_chat_frame(tmp_path: Path, family: str) -> None:
    """A from-scratch tokenizer must not spell the template's role words byte by byte on every turn."""
    from transformers import AutoTokenizer

    from xllava.config import LLMConfig, ScratchLLMConfig
    from xllava.model.families import get_family
    from xllava.model.llm_sources import build_scratch_llm

    texts = ["a red ball is at the top left", "빨간 공은 왼쪽 위에 있어요", "the sky is cloudy"] * 100
    scratch = ScratchLLMConfig(vocab_size=400, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                               num_attention_heads=2, num_key_value_heads=2)
    out = build_scratch_llm(LLMConfig(source="scratch", family=family, scratch=scratch), tmp_path, texts)
    tok = AutoTokenizer.from_pretrained(out)
    turn = [{"role": "user", "content": "the sky"}, {"role": "assistant", "content": "cloudy"}]
    framed = tok.apply_chat_template(turn, tokenize=False)
    bare = tok("the sky", add_special_tokens=False)["input_ids"] + tok("cloudy", add_special_tokens=False)["input_ids"]
    frame_tokens = len(tok(framed, add_special_tokens=False)["input_ids"]) - len(bare)
    # chatml: <|im_start|> user \n ... <|im_end|> \n <|im_start|> assistant \n ... <|im_end|> \n
    # llama2: <s> [INST] ... [/INST] ... </s>, with "[INST]" and "[/INST]" a few pieces each
    limit = {"chatml": 10, "llama2": 10}[family]  # unlearned, chatml alone is 20
    assert frame_tokens <= limit, (family, tok.tokenize(framed))
    assert get_family(family).frame_text


def test_stage_settings_reach_the_trainer(tmp_path: Path) -> None:
    # transformers 5 takes the warmup fraction through warmup_steps; a whole number there means steps
    from xllava.train.arguments import training_arguments

    recipe = load_recipe(RECIPES[0], ["instruct.warmup_ratio=0.1", "instruct.betas=[0.8, 0.95]",
                                      "instruct.weight_decay=0.2", "instruct.batch_size=64",
                                      "instruct.micro_batch=16"])
    args = training_arguments(recipe.instruct, tmp_path)
    assert args.get_warmup_steps(2000) == 200
    assert (args.adam_beta1, args.adam_beta2, args.weight_decay) == (0.8, 0.95, 0.2)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (16, 4)
    with pytest.raises(ValueError, match="betas"):
        load_recipe(RECIPES[0], ["instruct.betas=[0.9, 1.0]"])


@pytest.mark.parametrize(("old", "new"), [("instruct.grad_accum=2", "batch_size"),
                                          ("lm.adam_beta2=0.95", "betas"),
                                          ("align.warmup_steps=10", "warmup_ratio")])
def test_old_training_field_names_name_the_new_field(old: str, new: str) -> None:
    with pytest.raises(ValueError, match=f"`{old.split('.')[1].split('=')[0]}` is no longer a field: use {new}"):
        load_recipe(RECIPES[0], [old])


def test_the_global_batch_splits_over_processes() -> None:
    from xllava.config import TrainStageConfig

    cfg = TrainStageConfig(batch_size=256, micro_batch=16)
    assert cfg.per_process(8) == (16, 2)
    assert TrainStageConfig(batch_size=256).per_process(8) == (32, 1)
    with pytest.raises(ValueError, match="not a multiple"):
        TrainStageConfig(batch_size=96, micro_batch=16).per_process(4)
    with pytest.raises(ValueError, match="batch_size 100 is not a multiple of micro_batch 16"):
        TrainStageConfig(batch_size=100, micro_batch=16)  # at load, before any work
