"""The paper's Table 2 at embedded scale: one recipe, several variants, one table.

An ablation plan names a base recipe, overrides shared by every variant, and per variant the
overrides that make it (typically its stage list: with or without `vocab` and `lm`, and the stage-2
task types). Each variant is an ordinary `xllava run` into `<output_dir>/<variant>`, so a re-run skips
what is complete and an interrupted variant resumes.

Variants usually share a prefix of stages (the world, the generated data, the expanded vocabulary).
A stage whose config hash, upstream hashes included, equals one already finished by an earlier
variant is copied from there instead of recomputed; the hashes are the pipeline's own, so a copy is
only ever made where the pipeline would have produced the same stage.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml
from pydantic import BaseModel, Field

from xllava.config import Recipe, load_recipe
from xllava.pipeline import read_manifest, stage_digests
from xllava.strict import Strict


class Variant(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.+-]+$")
    set: list[str] = []
    note: str = ""


class AblationPlan(Strict):
    name: str
    base: str  # recipe path, relative to the plan file's directory's parent (the repository root) or absolute
    output_dir: str = "runs/${name}"
    shared: list[str] = []
    variants: list[Variant]
    languages: list[str] = ["ko", "en"]

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir.replace("${name}", self.name))


class VariantResult(BaseModel):
    name: str
    stages: list[str]
    accuracy: dict[str, float]  # language -> mean over question types
    seconds: dict[str, float]  # stage -> seconds it took when it ran (copied stages keep theirs)
    budget: dict[str, float | int | None]
    note: str = ""


def load_plan(path: Path, overrides: list[str] | None = None) -> tuple[AblationPlan, Path]:
    if not path.exists():
        raise FileNotFoundError(f"ablation plan {path} does not exist")
    try:
        plan = AblationPlan.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except Exception as err:
        raise ValueError(f"{path}: {err}") from err
    base = Path(plan.base)
    if not base.is_absolute() and not base.exists():
        base = path.parent.parent / plan.base
    if not base.exists():
        raise FileNotFoundError(f"{path}: field 'base': recipe {plan.base} does not exist")
    if overrides:
        plan = plan.model_copy(update={"shared": [*plan.shared, *overrides]})
    names = [v.name for v in plan.variants]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: field 'variants': duplicate names in {names}")
    return plan, base


def variant_recipe(plan: AblationPlan, base: Path, variant: Variant) -> Recipe:
    out = plan.run_dir / variant.name
    return load_recipe(base, [*plan.shared, *variant.set, f"name={variant.name}", f"output_dir={out}"])


def share_finished_stages(recipe: Recipe, donors: list[Recipe], log=print) -> list[str]:
    """Copy into `recipe`'s run directory every stage a donor finished with the same hash (the hash
    covers everything the stage reads, so a stage after one that differs may still be shared: the
    tower, when variants differ only in the LLM)."""
    copied: list[str] = []
    for stage, digest in stage_digests(recipe):
        target = recipe.run_dir / stage
        mine = read_manifest(target)
        if mine and mine.get("config_hash") == digest:
            continue
        donor_dir = next(
            (d.run_dir / stage for d in donors if (read_manifest(d.run_dir / stage) or {}).get("config_hash") == digest),
            None,
        )
        if stage in ("eval", "report"):
            break  # each variant evaluates and reports on its own model
        if donor_dir is None:
            continue  # this variant computes it; a later stage that does not read it may still be shared
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(donor_dir, target, symlinks=True)
        copied.append(stage)
        log(f"[ablation] {recipe.name}: {stage} copied from {donor_dir}")
    return copied


def _figures(run_dir: Path, stage: str) -> dict:
    return (read_manifest(run_dir / stage) or {}).get("figures", {})


def collect(recipe: Recipe, variant: Variant, languages: list[str]) -> VariantResult:
    run_dir = recipe.run_dir
    scores = _figures(run_dir, "eval").get("scores", {})
    seconds = {s: float((read_manifest(run_dir / s) or {}).get("seconds", 0.0)) for s in recipe.stages}
    vocab, lm = _figures(run_dir, "vocab"), _figures(run_dir, "lm")
    budget = {
        "vocab.added": vocab.get("added") if "vocab" in recipe.stages else None,
        "lm.steps": lm.get("steps") if "lm" in recipe.stages else None,
        "lm.tokens": lm.get("tokens") if "lm" in recipe.stages else None,
        "align.samples": _figures(run_dir, "align").get("samples"),
        "instruct.samples": _figures(run_dir, "instruct").get("samples"),
    }
    return VariantResult(
        name=variant.name,
        stages=recipe.stages,
        accuracy={lang: scores[lang]["accuracy"] for lang in languages if lang in scores},
        seconds=seconds,
        budget=budget,
        note=variant.note,
    )


def render_table(plan: AblationPlan, results: list[VariantResult]) -> str:
    langs = plan.languages
    head = ["variant", "vocab", "lm", "stage-2 tasks", *[f"{lang} acc" for lang in langs],
            "lm steps", "lm tokens", "instruct samples", "time (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        acc = [f"{100 * r.accuracy[lang]:.1f}%" if lang in r.accuracy else "–" for lang in langs]
        b = r.budget
        row = [
            r.name,
            "expanded" if "vocab" in r.stages else "base",
            "trained" if "lm" in r.stages else "–",
            r.note or "",
            *acc,
            str(b["lm.steps"] or "–"),
            f"{b['lm.tokens']:,}" if b["lm.tokens"] else "–",
            str(b["instruct.samples"] or "–"),
            f"{sum(r.seconds.values()):.0f}",
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def run_ablation(plan_path: Path, overrides: list[str] | None = None, only: list[str] | None = None,
                 log=print) -> Path:
    """Run every variant (or those in `only`), then write table.md and table.json; returns table.md."""
    from xllava.scale.launch import run_pipeline

    plan, base = load_plan(plan_path, overrides)
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    unknown = sorted(set(only or []) - {v.name for v in plan.variants})
    if unknown:
        raise ValueError(f"{plan_path}: no variant named {unknown}; known: {[v.name for v in plan.variants]}")
    done: list[Recipe] = []
    results: list[VariantResult] = []
    for variant in plan.variants:
        recipe = variant_recipe(plan, base, variant)
        if only is None or variant.name in only:
            share_finished_stages(recipe, done, log)
            log(f"[ablation] {variant.name}: stages {recipe.stages}")
            run_pipeline(recipe)
        done.append(recipe)
        if (recipe.run_dir / "eval" / "manifest.json").exists():
            results.append(collect(recipe, variant, plan.languages))
    table = render_table(plan, results)
    budget = (f"Each variant: `{base}` with {plan.shared or 'no shared overrides'}; "
              "time is the sum of its stages' own run times (copied stages count where they ran).")
    md = f"# Ablation: {plan.name}\n\n{table}\n\n{budget}\n"
    (plan.run_dir / "table.md").write_text(md, encoding="utf-8")
    (plan.run_dir / "table.json").write_text(
        json.dumps([r.model_dump() for r in results], indent=1, ensure_ascii=False), encoding="utf-8"
    )
    return plan.run_dir / "table.md"
