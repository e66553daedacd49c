"""`xllava ablation`: variants of one recipe run into their own directories, shared stages are
copied rather than recomputed, and one table holds every variant's Korean and English accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import FAST, ROOT
from xllava.ablation import load_plan, run_ablation

LM_FAST = ["lm.max_steps=2", "lm.seq_len=64", "lm.eval_limit=10", "lm.tokens_per_epoch=10000",
           "lm.logging_steps=1", "lm.batch_size=2", "lm.micro_batch=2", "eval.only=[short]"]


def _plan(tmp_path: Path) -> Path:
    """The shipped plan, cut to three variants and the fast budget."""
    plan = yaml.safe_load((ROOT / "recipes" / "ablation.yaml").read_text())
    keep = {"base-V-P", "expanded-P", "expanded+P"}
    plan["variants"] = [v for v in plan["variants"] if v["name"] in keep]
    plan["base"] = str(ROOT / "recipes" / "tiny.yaml")
    plan["output_dir"] = str(tmp_path / "ablation")
    fast = [s for s in FAST if not s.startswith("eval.suite.")]  # the plan switches the suite off
    plan["shared"] = [*plan["shared"], *fast, *LM_FAST]
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan, allow_unicode=True))
    return path


@pytest.mark.slow
def test_ablation_runs_every_variant_shares_stages_and_writes_one_table(tmp_path: Path) -> None:
    logs: list[str] = []
    table = run_ablation(_plan(tmp_path), log=logs.append)
    out = tmp_path / "ablation"
    rows = json.loads((out / "table.json").read_text())
    assert [r["name"] for r in rows] == ["base-V-P", "expanded-P", "expanded+P"]
    for r in rows:
        assert set(r["accuracy"]) == {"ko", "en"} and all(0 <= a <= 1 for a in r["accuracy"].values())
    text = table.read_text()
    assert all(f"| {name} |" in text for name in ("base-V-P", "expanded-P", "expanded+P"))
    assert rows[2]["budget"]["lm.steps"] == 2 and rows[0]["budget"]["lm.steps"] is None

    # world and datagen ran once; the expanded vocabulary once for the two expanded variants
    copied = [line for line in logs if "copied from" in line]
    assert any("expanded-P: world" in line for line in copied)
    assert any("expanded+P: vocab" in line for line in copied)
    donor = json.loads((out / "base-V-P" / "world" / "manifest.json").read_text())
    assert json.loads((out / "expanded+P" / "world" / "manifest.json").read_text()) == donor

    # the base tokenizer is English-centric: Korean falls back to bytes until the vocab stage adds pieces
    from transformers import AutoTokenizer

    ko = "빨간 공은 왼쪽 위에 있어요."
    base = AutoTokenizer.from_pretrained(out / "base-V-P" / "base" / "llm")
    expanded = AutoTokenizer.from_pretrained(out / "expanded-P" / "vocab" / "model")
    assert len(expanded(ko)["input_ids"]) < len(base(ko)["input_ids"]) / 2

    # a second run recomputes nothing
    again: list[str] = []
    run_ablation(_plan(tmp_path), log=again.append)
    assert not any("copied from" in line for line in again)


def test_plan_errors_name_the_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nbase: recipes/tiny.yaml\nvariants: [{name: a}, {name: a}]\n")
    with pytest.raises(ValueError, match=r"bad.yaml: field 'variants': duplicate"):
        load_plan(path)
    path.write_text("name: x\nbase: nowhere.yaml\nvariants: []\n")
    with pytest.raises(FileNotFoundError, match=r"bad.yaml: field 'base'"):
        load_plan(path)
    path.write_text("name: x\nbase: recipes/tiny.yaml\nvariants: [{name: a, sett: []}]\n")
    with pytest.raises(ValueError, match=r"(?s)bad.yaml.*sett"):
        load_plan(path)
