"""The `xllava` command: `run` for a whole recipe, and one command per stage."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

RecipeArg = typer.Argument(..., exists=True, dir_okay=False, help="recipe YAML (see recipes/)")
SetOpt = typer.Option(None, "--set", "-s", help="override a recipe field: section.field=value (repeatable)")


def _recipe(path: Path, overrides: list[str] | None):
    from xllava.config import load_recipe

    return load_recipe(path, overrides)


@app.command()
def run(
    recipe: Path = RecipeArg,
    overrides: list[str] = SetOpt,
    only: list[str] = typer.Option(None, "--only", help="run only these stages (earlier ones must be complete)"),
    force: bool = typer.Option(False, help="redo stages even if complete"),
) -> None:
    """Run a recipe end to end: skip complete stages, resume an interrupted one, write the report."""
    from xllava.pipeline import Pipeline

    r = _recipe(recipe, overrides)
    results = Pipeline(r).run(only=only, force=force)
    run_dir = r.run_dir
    typer.echo("")
    if "instruct" in results or "align" in results:
        model_dir = results.get("instruct", results.get("align"))["figures"]["model_dir"]
        typer.echo(f"model:  {model_dir}")
    if "eval" in results:
        for lang, s in results["eval"]["figures"]["scores"].items():
            typer.echo(f"accuracy {lang}: {s['accuracy']:.1%} (mean over question types)")
    if "report" in results:
        typer.echo(f"report: {results['report']['figures']['report']}")
    typer.echo(f"run directory: {run_dir}")


@app.command()
def world(
    out_dir: Path = typer.Argument(..., help="where to write images, annotations, captions, benchmarks"),
    recipe: Path = typer.Option(None, help="take the world section from this recipe"),
    overrides: list[str] = SetOpt,
) -> None:
    """Build the embedded trilingual world."""
    from xllava.config import WorldConfig
    from xllava.world import build_world

    cfg = _recipe(recipe, overrides).world if recipe else WorldConfig()
    summary = build_world(out_dir, cfg)
    typer.echo(json.dumps(summary, indent=1, ensure_ascii=False)[:2000])


@app.command()
def train(
    stage: str = typer.Argument(..., help="align or instruct"),
    recipe: Path = RecipeArg,
    overrides: list[str] = SetOpt,
) -> None:
    """Run one training stage of a recipe (earlier stages must be complete)."""
    from xllava.pipeline import Pipeline

    if stage not in ("align", "instruct"):
        raise typer.BadParameter("stage must be align or instruct")
    Pipeline(_recipe(recipe, overrides)).run(only=[stage])


@app.command("eval")
def eval_(
    model_dir: Path = typer.Argument(..., exists=True, file_okay=False),
    bench_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="folder of {lang}.jsonl"),
    out_dir: Path = typer.Option(Path("eval-out"), help="predictions and scores go here"),
    lang: list[str] = typer.Option(["en", "ko"], help="languages to evaluate"),
    limit: int = typer.Option(None, help="first N questions per language"),
) -> None:
    """Evaluate a LLaVA directory on short-answer benchmark files (exact match per type)."""
    from xllava.config import EvalConfig
    from xllava.eval.world_bench import evaluate

    scores = evaluate(EvalConfig(languages=lang, limit=limit), model_dir, bench_dir, out_dir)
    for code, s in scores.items():
        typer.echo(f"{code}: {s['accuracy']:.1%}  " + "  ".join(f"{c}={v:.0%}" for c, v in s["per_type"].items()))


@app.command()
def ask(
    model_dir: Path = typer.Argument(..., exists=True, file_okay=False),
    image: Path = typer.Argument(..., exists=True, dir_okay=False),
    question: str = typer.Argument(...),
    max_new_tokens: int = 64,
) -> None:
    """Answer one question about one image (greedy)."""
    from xllava.infer import answer_batch
    from xllava.model.assemble import load_llava

    model, processor = load_llava(model_dir)
    typer.echo(answer_batch(model, processor, [image], [question], max_new_tokens)[0])


if __name__ == "__main__":
    app()
