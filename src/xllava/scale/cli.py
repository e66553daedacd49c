"""`xllava scale ...`: plan a large run before renting the GPUs."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@app.command()
def plan(
    recipe: Path = typer.Argument(..., exists=True, dir_okay=False, help="recipe YAML"),
    overrides: list[str] = typer.Option(None, "--set", "-s", help="override a recipe field: section.field=value"),
    gpus: int = typer.Option(4, help="data-parallel GPUs in total (all nodes)"),
    llm_arch: str = typer.Option(None, help="LLM architecture when model.llm.path is not on disk (llama-2-13b, ...)"),
    vocab_size: int = typer.Option(None, help="the LLM's vocabulary after expansion (X-LLaVA: 39478)"),
    samples: list[str] = typer.Option(None, help="STAGE=N samples (default: counted, or the paper's)"),
    text_tokens: list[str] = typer.Option(None, help="STAGE=N text tokens per sample (default: an assumption)"),
    supervised_tokens: list[str] = typer.Option(None, help="STAGE=N supervised tokens per sample"),
    mfu: float = typer.Option(0.4, help="model FLOPs utilisation assumed for GPU-hours"),
    gpus_per_node: int = typer.Option(8, help="GPUs (ranks) per node, for host RAM per node"),
    as_json: bool = typer.Option(False, "--json", help="print the plan as JSON"),
) -> None:
    """Parameters, memory per GPU for ZeRO 0-3 (LoRA and full), steps, tokens and compute per stage.
    Offline: configs only, the model is built on the meta device."""
    from xllava.config import load_recipe
    from xllava.scale.plan import build_plan, parse_stage_ints, render

    try:
        result = build_plan(
            load_recipe(recipe, overrides), gpus, llm_arch, vocab_size,
            parse_stage_ints(samples, "--samples"), parse_stage_ints(text_tokens, "--text-tokens"),
            parse_stage_ints(supervised_tokens, "--supervised-tokens"), mfu, gpus_per_node,
        )
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    typer.echo(json.dumps(result, indent=1) if as_json else render(result))
